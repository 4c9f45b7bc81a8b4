-- Media a customer sent (MMS now, WhatsApp later), one row per file, kept
-- with its message. Images are fetched by a `fetch_media` job; the bytes live
-- here as a BLOB so a photo commits, backs up and is deleted with the
-- database it belongs to (at most 10 files of 5 MB per message), and a
-- Postgres backend stores them as `bytea` the same way.
--
-- status: pending -> fetched | too_large | failed
--         not_fetched (not an image: recorded only)
--         refused (the URL is not under the Twilio API base: never fetched)
CREATE TABLE media (
    id               INTEGER PRIMARY KEY,
    message_id       INTEGER NOT NULL REFERENCES messages(id),
    conversation_id  INTEGER NOT NULL REFERENCES conversations(id),
    position         INTEGER NOT NULL,      -- N of MediaUrl{N}
    url              TEXT NOT NULL,
    content_type     TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'fetched', 'too_large', 'failed', 'not_fetched', 'refused')),
    bytes            BLOB,
    size             INTEGER,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    fetched_at       TEXT,
    UNIQUE (message_id, position)
);

CREATE INDEX media_by_conversation ON media (conversation_id, message_id);
