-- Bookings, and the openings held for a customer while they decide.
--
-- A booking's id is deterministic (from the conversation, provider and
-- start) and is also its calendar event id, so a retried booking finds its
-- earlier attempt instead of making a second one. Without Google Calendar,
-- this table is the calendar. Times are integer milliseconds for overlap
-- queries.

CREATE TABLE bookings (
    id               TEXT PRIMARY KEY,
    conversation_id  INTEGER NOT NULL REFERENCES conversations(id),
    provider_id      TEXT NOT NULL,
    calendar_id      TEXT NOT NULL,
    start_ms         INTEGER NOT NULL,
    end_ms           INTEGER NOT NULL,
    label            TEXT NOT NULL,
    -- pending: rules re-checked, calendar event being written
    -- confirmed: the event exists; cancelled: it was removed
    status           TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    -- When the status last changed: a 'pending' row this old was abandoned
    -- by a crash and no longer blocks its slot.
    updated_ms       INTEGER NOT NULL
);

CREATE INDEX bookings_by_provider ON bookings (provider_id, start_ms) WHERE status != 'cancelled';

CREATE TABLE slot_holds (
    conversation_id  INTEGER NOT NULL REFERENCES conversations(id),
    provider_id      TEXT NOT NULL,
    start_ms         INTEGER NOT NULL,
    end_ms           INTEGER NOT NULL,
    expires_ms       INTEGER NOT NULL
);

CREATE INDEX slot_holds_by_provider ON slot_holds (provider_id, start_ms);
CREATE INDEX slot_holds_by_conversation ON slot_holds (conversation_id);
