-- The owner's assistant settings from the console: one TOML value per
-- [assistant] key, laid over that business's business.toml (which stays
-- the base) whenever the configuration is loaded, reloaded or saved.
CREATE TABLE assistant_fragments (
    business_id  TEXT NOT NULL,
    key          TEXT NOT NULL,              -- an [assistant] key, e.g. tone
    value        TEXT NOT NULL,              -- a TOML value, e.g. "casual"
    updated_at   TEXT NOT NULL,
    updated_by   TEXT NOT NULL,              -- who saved it: "owner console"
    PRIMARY KEY (business_id, key)
);
