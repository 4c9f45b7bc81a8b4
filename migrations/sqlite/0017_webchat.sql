-- Web chat sessions: the widget's token (stored as its SHA-1 only), the
-- visitor's `web:` address (their customer row's phone), and the phone
-- number they are proving theirs with a texted code.
CREATE TABLE webchat_sessions (
    token_hash              TEXT PRIMARY KEY,
    business_id             TEXT NOT NULL,
    address                 TEXT NOT NULL UNIQUE,
    created_at              TEXT NOT NULL,
    code_phone              TEXT,
    code_hash               TEXT,
    code_expires_ms         INTEGER,
    code_attempts           INTEGER NOT NULL DEFAULT 0,
    codes_sent              INTEGER NOT NULL DEFAULT 0,
    verified_phone          TEXT,
    verified_at             TEXT,
    linked_conversation_id  INTEGER REFERENCES conversations(id)
);
