-- Wake-up across instances: every process LISTENs on `textdesk_wake`
-- (src/store/postgres/listen.rs). A stored inbound text wakes the turn
-- workers, a pending job the job runners. NOTIFY is delivered at commit
-- and identical notifications of one transaction are sent once, so a
-- group of texts or jobs stored together costs one notification.

CREATE FUNCTION textdesk_wake_on_inbound() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('textdesk_wake', 'inbound');
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_wake AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.direction = 'inbound' AND NEW.status = 'pending')
    EXECUTE FUNCTION textdesk_wake_on_inbound();

CREATE FUNCTION textdesk_wake_on_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('textdesk_wake', 'job');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_wake_on_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION textdesk_wake_on_job();

CREATE TRIGGER jobs_wake_on_requeue AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (NEW.status = 'pending' AND OLD.status IS DISTINCT FROM 'pending')
    EXECUTE FUNCTION textdesk_wake_on_job();
