-- cmsv6 schema, version 7: webhooks (issue 14). An admin registers a webhook (a URL, the
-- events it wants, a secret); triggers write each event, once per interested webhook, into
-- webhook_deliveries (the outbox) in the transaction that records the fact itself, so an
-- event is recorded exactly when its fact is committed, by whichever server wrote it; the
-- active login server POSTs the outbox (cmsv6.webhooks.dispatcher) and deletes what was
-- delivered. With no webhook asking for an event, the triggers write nothing.

CREATE TABLE webhooks (
    id          bigserial PRIMARY KEY,
    url         text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    events      text[] NOT NULL CHECK (cardinality(events) >= 1),
    secret      text NOT NULL CHECK (length(secret) BETWEEN 16 AND 200),
    description text CHECK (length(description) <= 200),
    created     timestamptz NOT NULL DEFAULT now(),
    created_by  bigint REFERENCES users ON DELETE SET NULL,
    dropped     bigint NOT NULL DEFAULT 0,   -- deliveries given up
    last_error  text
);

-- event_id is the event's (the same for every webhook and every attempt: receivers
-- de-duplicate by it); payload is the body POSTed, fixed when the event happened.
CREATE TABLE webhook_deliveries (
    id            bigserial PRIMARY KEY,
    webhook_id    bigint NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    event_id      uuid NOT NULL,
    event         text NOT NULL,
    payload       jsonb NOT NULL,
    created       timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    next_attempt  timestamptz NOT NULL DEFAULT now(),
    last_error    text
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, next_attempt, id);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created);

-- UTC, ISO 8601, as the Open API writes times.
CREATE FUNCTION cmsv6_iso(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
$$;

-- One row per webhook that asks for this event; nothing when none does.
CREATE FUNCTION cmsv6_webhook_event(name text, data jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ident uuid := gen_random_uuid();
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, event, payload)
    SELECT w.id, ident, name, jsonb_build_object(
               'id', ident, 'event', name, 'time', cmsv6_iso(now()), 'data', data)
    FROM webhooks w WHERE name = ANY (w.events);
END
$$;

CREATE FUNCTION cmsv6_alarm_json(a alarms) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'phone', (SELECT phone FROM devices WHERE id = a.device_id),
        'kind', a.kind, 'started', cmsv6_iso(a.started), 'ended', cmsv6_iso(a.ended),
        'latitude', a.latitude, 'longitude', a.longitude, 'details', a.details,
        'state', a.state, 'handled', cmsv6_iso(a.handled),
        'handled_by', (SELECT name FROM users WHERE id = a.handled_by), 'note', a.note)
$$;

CREATE FUNCTION cmsv6_alarm_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM cmsv6_webhook_event('alarm.opened', jsonb_build_object('alarm', cmsv6_alarm_json(NEW)));
        IF NEW.ended IS NOT NULL THEN  -- a blind-area upload may open and end it at once
            PERFORM cmsv6_webhook_event('alarm.closed', jsonb_build_object('alarm', cmsv6_alarm_json(NEW)));
        END IF;
    ELSE
        IF OLD.ended IS NULL AND NEW.ended IS NOT NULL THEN
            PERFORM cmsv6_webhook_event('alarm.closed', jsonb_build_object('alarm', cmsv6_alarm_json(NEW)));
        END IF;
        IF NEW.state IS DISTINCT FROM OLD.state OR NEW.handled IS DISTINCT FROM OLD.handled THEN
            PERFORM cmsv6_webhook_event('alarm.handled', jsonb_build_object('alarm', cmsv6_alarm_json(NEW)));
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER alarms_webhooks AFTER INSERT OR UPDATE ON alarms
    FOR EACH ROW EXECUTE FUNCTION cmsv6_alarm_events();

-- device.online when a session opens; device.offline when one ends and the device has no
-- other open session (a device that moved to another gateway before its old one noticed is
-- not offline).
CREATE FUNCTION cmsv6_session_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d devices;
BEGIN
    SELECT * INTO d FROM devices WHERE id = NEW.device_id;
    IF TG_OP = 'INSERT' THEN
        PERFORM cmsv6_webhook_event('device.online', jsonb_build_object(
            'phone', d.phone, 'plate', d.plate, 'gateway', NEW.gateway_id,
            'time', cmsv6_iso(NEW.connected)));
    ELSIF OLD.disconnected IS NULL AND NEW.disconnected IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM device_sessions s WHERE s.device_id = NEW.device_id
            AND s.id <> NEW.id AND s.disconnected IS NULL) THEN
        PERFORM cmsv6_webhook_event('device.offline', jsonb_build_object(
            'phone', d.phone, 'plate', d.plate, 'gateway', NEW.gateway_id,
            'time', cmsv6_iso(NEW.disconnected), 'reason', NEW.reason));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER device_sessions_webhooks AFTER INSERT OR UPDATE ON device_sessions
    FOR EACH ROW EXECUTE FUNCTION cmsv6_session_events();

CREATE FUNCTION cmsv6_command_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'replied' AND OLD.status IS DISTINCT FROM 'replied' THEN
        PERFORM cmsv6_webhook_event('command.answered', jsonb_build_object(
            'command', NEW.id, 'phone', (SELECT phone FROM devices WHERE id = NEW.device_id),
            'msg_id', '0x' || lpad(to_hex(NEW.msg_id), 4, '0'),
            'user', (SELECT name FROM users WHERE id = NEW.user_id),
            'status', NEW.status, 'reply', NEW.reply));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER commands_webhooks AFTER UPDATE OF status ON commands
    FOR EACH ROW EXECUTE FUNCTION cmsv6_command_events();
