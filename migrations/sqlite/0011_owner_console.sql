-- The owner's console: one login for the installation, its sessions, what
-- the owner has read, and alerts the owner has dealt with.

-- One row at most: there is one owner login and no user name.
CREATE TABLE owner_credentials (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    password_hash  TEXT NOT NULL,            -- argon2id, PHC string
    updated_at     TEXT NOT NULL
);

-- tower-sessions records, kept here so a restart (or a second instance on
-- the same database) does not log the owner out.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    data        TEXT NOT NULL,               -- JSON
    expires_at  INTEGER NOT NULL             -- unix seconds
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- The newest message the owner has seen in each conversation: later
-- customer texts are unread.
CREATE TABLE console_reads (
    conversation_id  INTEGER PRIMARY KEY REFERENCES conversations(id),
    last_read_id     INTEGER NOT NULL
);

ALTER TABLE alerts ADD COLUMN resolved_at TEXT;
ALTER TABLE alerts ADD COLUMN resolved_by TEXT;
CREATE INDEX alerts_open ON alerts (business_id, created_at) WHERE resolved_at IS NULL;

-- The inbox orders 10,000 conversations by their newest message and marks
-- the unread: kept on the conversation by a trigger (every writer of
-- messages, now and later, keeps it right without knowing), instead of a
-- MAX() per conversation on every page view.
ALTER TABLE conversations ADD COLUMN last_message_id INTEGER;
ALTER TABLE conversations ADD COLUMN last_inbound_id INTEGER;
UPDATE conversations SET
    last_message_id = (SELECT MAX(id) FROM messages WHERE conversation_id = conversations.id),
    last_inbound_id = (SELECT MAX(id) FROM messages
                       WHERE conversation_id = conversations.id AND direction = 'inbound');
CREATE TRIGGER messages_mark_conversation_activity AFTER INSERT ON messages
BEGIN
    UPDATE conversations
    SET last_message_id = MAX(COALESCE(last_message_id, 0), NEW.id),
        last_inbound_id = CASE WHEN NEW.direction = 'inbound'
                               THEN MAX(COALESCE(last_inbound_id, 0), NEW.id)
                               ELSE last_inbound_id END
    WHERE id = NEW.conversation_id;
END;

-- The state's tag, for the inbox's filters, read from the state itself.
ALTER TABLE conversations ADD COLUMN state_tag TEXT
    GENERATED ALWAYS AS (json_extract(state, '$.state')) VIRTUAL;
CREATE INDEX conversations_by_activity ON conversations (last_message_id);
CREATE INDEX conversations_by_state ON conversations (state_tag, last_message_id);
