-- Approval before sending ([assistant] approval). A reply that waits for
-- the owner is an outbound message with status 'held': never 'queued', so
-- no sender and no crash recovery ever picks it up. The owner's decision
-- moves it once, in one conditional UPDATE:
--   held -> sending (approved, or edited and approved) -> sent | ...
--   held -> rejected | expired (no one acted in time)
-- and only a row still 'held' moves, so a double click or a timeout racing
-- an approval acts once.
--
-- At most one reply per conversation is held (the turn does not draft
-- another while one waits), found by this index: the turn's one check, the
-- inbox's "needs you" and the conversation page.
CREATE INDEX messages_held ON messages (conversation_id)
    WHERE direction = 'outbound' AND status = 'held';
