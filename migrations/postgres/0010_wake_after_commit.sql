-- A stored inbound text no longer NOTIFYs from inside its transaction.
-- A transaction that notifies takes one lock for the whole database at
-- commit and holds it through its WAL flush, so every webhook's commit
-- queued behind the others' fsyncs (pg_stat_activity under load: most
-- waiting webhooks on `Lock: object`). The store now sends the wake-up
-- after the text's commit, on a commit of its own that does not wait for
-- the disk, and texts stored while one is being sent share the next
-- (src/store/postgres/mod.rs, `FleetWake`). Jobs keep their triggers:
-- they are stored far less often.
DROP TRIGGER messages_wake ON messages;
DROP FUNCTION textdesk_wake_on_inbound();
