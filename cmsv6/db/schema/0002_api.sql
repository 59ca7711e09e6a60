-- cmsv6 schema, version 2: the Open API's tokens, and a creation time on alarms so the
-- client WebSocket can find new alarms by the database's clock (alarms.started is the
-- device's clock, which may be hours off or describe a blind-area upload of old reports).

-- Bearer tokens of the Open API and the client WebSocket. Only a SHA-256 of the token is
-- stored: a copy of the table gives nobody a session.
CREATE TABLE api_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    created     timestamptz NOT NULL,
    expires     timestamptz NOT NULL,
    address     text
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
CREATE INDEX api_tokens_expires ON api_tokens (expires);

-- When the row was written (the database's clock, not the device's): the start of the
-- writing transaction. now() is not volatile, so existing rows take the upgrade's time
-- without rewriting the table.
ALTER TABLE alarms ADD COLUMN created timestamptz NOT NULL DEFAULT now();
CREATE INDEX alarms_created ON alarms (created);
