-- The spine: customers, their conversations, every text in and out, and
-- alerts the owner must see. Timestamps the code compares (leases) are
-- integer milliseconds since the epoch; the rest are RFC 3339 text.

CREATE TABLE customers (
    id            INTEGER PRIMARY KEY,
    phone         TEXT NOT NULL UNIQUE,          -- E.164
    opted_out_at  TEXT,                          -- set by STOP or Twilio 21610
    created_at    TEXT NOT NULL
);

-- One conversation per customer and business number. The worker claims a
-- conversation with a lease so that its texts are handled one turn at a time.
CREATE TABLE conversations (
    id               INTEGER PRIMARY KEY,
    customer_id      INTEGER NOT NULL REFERENCES customers(id),
    business_number  TEXT NOT NULL,
    lease_owner      TEXT,
    lease_until_ms   INTEGER,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (customer_id, business_number)
);

-- Inbound status:  pending -> handled
-- Outbound status: queued -> sending -> sent | failed | opted_out | unknown
CREATE TABLE messages (
    id               INTEGER PRIMARY KEY,
    conversation_id  INTEGER NOT NULL REFERENCES conversations(id),
    direction        TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    kind             TEXT NOT NULL,  -- inbound: 'customer'; outbound: 'reply', 'apology', 'help', ...
    body             TEXT NOT NULL,
    status           TEXT NOT NULL,
    twilio_sid       TEXT UNIQUE,    -- inbound MessageSid (the idempotency key) or outbound SID
    -- The last inbound message a reply answers: one reply per turn, even if
    -- the turn is run again after a crash.
    reply_to_id      INTEGER UNIQUE REFERENCES messages(id),
    num_media        INTEGER NOT NULL DEFAULT 0,
    media_urls       TEXT NOT NULL DEFAULT '[]',   -- JSON array
    params           TEXT NOT NULL DEFAULT '{}',   -- every webhook parameter, JSON
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    sent_at          TEXT
);

CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
-- Only unanswered texts, in arrival order: the worker's "who is next" and a
-- turn's "what is unanswered" stay index lookups however long history gets.
CREATE INDEX messages_pending_inbound ON messages (id, conversation_id)
    WHERE direction = 'inbound' AND status = 'pending';
CREATE INDEX messages_outbox ON messages (status)
    WHERE direction = 'outbound' AND status IN ('queued', 'sending');

-- Things a person must look at: the model unreachable, a send that failed.
CREATE TABLE alerts (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    conversation_id  INTEGER REFERENCES conversations(id),
    detail           TEXT NOT NULL,
    created_at       TEXT NOT NULL
);
