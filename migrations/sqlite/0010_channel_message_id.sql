-- The store speaks of channels, not of one provider: a message's id on its
-- channel (Twilio's MessageSid for SMS and WhatsApp, until now the column
-- `twilio_sid`) keeps its UNIQUE index, which RENAME COLUMN carries along.
ALTER TABLE messages RENAME COLUMN twilio_sid TO channel_message_id;

-- What the store used to dig out of the webhook's parameters (Twilio's
-- `OptOutType` and `ProfileName`) is handed to it by the channel as plain
-- fields now. Older rows keep their parameters, and are read the same way.
ALTER TABLE messages ADD COLUMN opt_out_keyword TEXT;
ALTER TABLE messages ADD COLUMN profile_name TEXT;
UPDATE messages
SET opt_out_keyword = NULLIF(json_extract(params, '$.OptOutType'), ''),
    profile_name = NULLIF(json_extract(params, '$.ProfileName'), '')
WHERE direction = 'inbound' AND json_valid(params);
