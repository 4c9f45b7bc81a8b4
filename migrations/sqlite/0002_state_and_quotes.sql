-- The conversation state machine's current state (JSON of
-- domain::conversation::ConversationState; NULL means a new INTAKE), and
-- every quote the engine produced, so any amount a text states can be
-- checked against them.

ALTER TABLE conversations ADD COLUMN state TEXT;
ALTER TABLE conversations ADD COLUMN state_changed_at TEXT;

CREATE TABLE quotes (
    id               TEXT PRIMARY KEY,
    conversation_id  INTEGER NOT NULL REFERENCES conversations(id),
    total            TEXT NOT NULL,
    quote            TEXT NOT NULL,   -- JSON: lines, hours, crew, assumptions, expiry
    created_at       TEXT NOT NULL
);

CREATE INDEX quotes_by_conversation ON quotes (conversation_id, created_at);
