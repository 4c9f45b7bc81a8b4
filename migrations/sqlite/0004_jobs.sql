-- One durable queue for all proactive work: reminders, quote follow-ups,
-- emails. Each job is one effect, named by a unique dedupe_key, so it is
-- never enqueued twice; a job is claimed atomically (status 'running' with
-- a lease) so two workers never run it at once.

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,        -- reminder | quote_follow_up | email
    dedupe_key       TEXT NOT NULL UNIQUE,
    conversation_id  INTEGER REFERENCES conversations(id),
    customer_id      INTEGER REFERENCES customers(id),
    recipient        TEXT NOT NULL,        -- a phone or an email address (masked when shown)
    payload          TEXT NOT NULL,        -- JSON
    run_at_ms        INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'dead', 'cancelled', 'suspended')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 5,
    last_error       TEXT,
    locked_until_ms  INTEGER,
    result           TEXT,                 -- e.g. the SMS SID or email message id
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);

-- Only pending jobs, by due time: finding the due batch is an index range
-- scan however many jobs the table holds.
CREATE INDEX jobs_due ON jobs (run_at_ms) WHERE status = 'pending';
-- Claims whose lease ran out (their worker died) are taken over.
CREATE INDEX jobs_running ON jobs (locked_until_ms) WHERE status = 'running';
CREATE INDEX jobs_by_customer ON jobs (customer_id, status);
CREATE INDEX jobs_by_conversation ON jobs (conversation_id, status);

-- A text a job sends is tied to it: one job, at most one text.
ALTER TABLE messages ADD COLUMN job_id INTEGER REFERENCES jobs(id);
CREATE UNIQUE INDEX messages_by_job ON messages (job_id) WHERE job_id IS NOT NULL;
