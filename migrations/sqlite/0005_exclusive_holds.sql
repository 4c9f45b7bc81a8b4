-- Holds are exclusive: a new hold is granted only if it and every live hold
-- of another conversation leave each other's job-plus-buffers free. That
-- check needs what a hold blocks (with buffers) beside its slot.
--
-- Holds live minutes; ones taken before this migration are dropped rather
-- than guessed at, and their customers are offered openings again.
DELETE FROM slot_holds;
ALTER TABLE slot_holds ADD COLUMN blocked_start_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE slot_holds ADD COLUMN blocked_end_ms INTEGER NOT NULL DEFAULT 0;
