-- Each turn's model usage (issue 11): one row per turn that called the
-- model, written when its calls end. A turn run again after a crash spent
-- its tokens again and adds a row of its own.
CREATE TABLE turn_usage (
    id                  INTEGER PRIMARY KEY,
    conversation_id     INTEGER NOT NULL REFERENCES conversations(id),
    through_message_id  INTEGER NOT NULL,
    model_calls         INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    cache_read_tokens   INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    created_at          TEXT NOT NULL
);

CREATE INDEX turn_usage_by_conversation ON turn_usage (conversation_id, id);
