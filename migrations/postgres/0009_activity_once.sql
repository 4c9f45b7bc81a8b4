-- A turn's commit moves its conversation's activity marker itself, in the
-- update that stores the state; the trigger then has nothing to move and
-- must not write the row again (a second row version, and one entry in
-- every index of the table, per turn). It still moves the markers of every
-- other insert (a stored text, an owner's reply, a job's text).
CREATE OR REPLACE FUNCTION messages_mark_conversation_activity() RETURNS trigger AS $$
BEGIN
    UPDATE conversations
    SET last_message_id = GREATEST(COALESCE(last_message_id, 0), NEW.id),
        last_inbound_id = CASE WHEN NEW.direction = 'inbound'
                               THEN GREATEST(COALESCE(last_inbound_id, 0), NEW.id)
                               ELSE last_inbound_id END
    WHERE id = NEW.conversation_id
      AND (last_message_id IS NULL OR last_message_id < NEW.id
           OR (NEW.direction = 'inbound' AND (last_inbound_id IS NULL OR last_inbound_id < NEW.id)));
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
