-- Several instances on one database (issue 11).
--
-- A text being sent is held by a send lease, as a conversation is by its
-- lease: `send_lease_until_ms` is set (epoch ms) whenever a text moves to
-- `sending`, and cleared when its send is recorded. A `sending` text whose
-- lease has passed was left by an instance that died mid-send; only such a
-- text is requeued (and reconciled with the channel's list of sent
-- messages before it is sent again). A live instance's send is never taken.
ALTER TABLE messages ADD COLUMN send_lease_until_ms BIGINT;
CREATE INDEX messages_sending ON messages (send_lease_until_ms)
    WHERE direction = 'outbound' AND status = 'sending';

-- Quotes given in one turn share a created_at (one clock reading); SQLite
-- orders them by rowid, Postgres by this insertion sequence.
ALTER TABLE quotes ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
