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
