-- Web chat sessions (as SQLite's 0017): the widget's token (stored as its
-- SHA-1 only), the visitor's `web:` address, and the phone number they
-- are proving theirs with a texted code.
CREATE TABLE webchat_sessions (
    token_hash              TEXT PRIMARY KEY,
    business_id             TEXT NOT NULL,
    address                 TEXT NOT NULL UNIQUE,
    created_at              TIMESTAMPTZ NOT NULL,
    code_phone              TEXT,
    code_hash               TEXT,
    code_expires_ms         BIGINT,
    code_attempts           BIGINT NOT NULL DEFAULT 0,
    codes_sent              BIGINT NOT NULL DEFAULT 0,
    verified_phone          TEXT,
    verified_at             TIMESTAMPTZ,
    linked_conversation_id  BIGINT REFERENCES conversations(id)
);
