-- Model calls each customer cost, per day of the business's calendar, so a
-- flooding sender's daily budget holds across restarts.
CREATE TABLE model_calls (
    customer_id  INTEGER NOT NULL REFERENCES customers(id),
    day          TEXT NOT NULL,      -- YYYY-MM-DD in the business's time zone
    calls        INTEGER NOT NULL,
    PRIMARY KEY (customer_id, day)
);

-- Each turn asks whether the owner already heard about this sender today:
-- an index lookup, however many alerts pile up.
CREATE INDEX alerts_by_conversation ON alerts (conversation_id, kind, created_at);
