-- Delivery receipts: what Twilio's status callbacks said about each text we
-- sent. `delivery_status` only moves forward (queued -> sending -> sent ->
-- delivered, or a final undelivered / failed / canceled / read); it stays
-- NULL until the first callback. `messages.status` remains our own send
-- state (sent, failed, opted_out, unknown).

ALTER TABLE messages ADD COLUMN delivery_status TEXT;
ALTER TABLE messages ADD COLUMN delivery_error_code INTEGER;
ALTER TABLE messages ADD COLUMN delivery_updated_at TEXT;

-- Each (message, status) callback is applied once: Twilio repeats them.
CREATE TABLE delivery_receipts (
    message_id   INTEGER NOT NULL REFERENCES messages(id),
    status       TEXT NOT NULL,
    error_code   INTEGER,
    applied      INTEGER NOT NULL,   -- 1 if it moved the text forward
    received_at  TEXT NOT NULL,
    PRIMARY KEY (message_id, status)
);
