-- Every text updates its conversation's row about five times (the activity
-- trigger on the text and on the reply, the claim, the turn's state, the
-- release). An update that changes no indexed column, on a page with room,
-- is a HOT update: one new row version and no index entries. Any other
-- writes an entry into every index of the table.
--
-- `conversations_leased` indexed the lease, so every claim, renewal and
-- release wrote seven index entries (pg_stat_statements: 11 WAL records per
-- claim, 8 per release). Only the sweep at start read it, and claims judge
-- leases on the row they have already found through the pending texts; the
-- sweep now reads the table once per start instead.
DROP INDEX conversations_leased;

-- Nothing orders or filters by activity alone: the inbox walks
-- `conversations_inbox_order`, and the handed-off list `conversations_by_state`.
DROP INDEX conversations_by_activity;

-- Room on each page for a row's next versions, so that lease updates stay
-- HOT instead of moving the row to another page (and indexing it anew).
ALTER TABLE conversations SET (fillfactor = 80);
