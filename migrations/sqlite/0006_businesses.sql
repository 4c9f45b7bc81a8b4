-- no-transaction
-- Many businesses in one database: every row belongs to one business.
-- Customers become unique per (business, phone), so a STOP to one business
-- never silences another. Rows written before businesses existed get the
-- placeholder id 'default', which the store hands to the configured
-- business at start (Store::adopt_legacy_rows).
--
-- The customers table is rebuilt to change its unique key; SQLite needs
-- foreign keys off for that, which only works outside a transaction.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE customers_new (
    id            INTEGER PRIMARY KEY,
    business_id   TEXT NOT NULL DEFAULT 'default',
    phone         TEXT NOT NULL,                 -- E.164, or whatsapp:+E164
    opted_out_at  TEXT,                          -- set by STOP or Twilio 21610
    created_at    TEXT NOT NULL,
    UNIQUE (business_id, phone)
);
INSERT INTO customers_new (id, business_id, phone, opted_out_at, created_at)
    SELECT id, 'default', phone, opted_out_at, created_at FROM customers;
DROP TABLE customers;
ALTER TABLE customers_new RENAME TO customers;

ALTER TABLE conversations ADD COLUMN business_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE quotes        ADD COLUMN business_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE bookings      ADD COLUMN business_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE slot_holds    ADD COLUMN business_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs          ADD COLUMN business_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE alerts        ADD COLUMN business_id TEXT NOT NULL DEFAULT 'default';

-- Crews are named per business ("crew-1" in two files is two crews).
DROP INDEX bookings_by_provider;
CREATE INDEX bookings_by_provider ON bookings (business_id, provider_id, start_ms) WHERE status != 'cancelled';
DROP INDEX slot_holds_by_provider;
CREATE INDEX slot_holds_by_provider ON slot_holds (business_id, provider_id, start_ms);
CREATE INDEX conversations_by_business ON conversations (business_id);

COMMIT;
PRAGMA foreign_keys = ON;
