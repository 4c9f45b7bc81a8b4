-- The inbox lists conversations by their newest message, newest first,
-- those with no message yet last (as SQLite orders them): an index in that
-- very order lets each page stop after its rows instead of sorting them all.
CREATE INDEX conversations_inbox_order ON conversations (last_message_id DESC NULLS LAST, id DESC);
