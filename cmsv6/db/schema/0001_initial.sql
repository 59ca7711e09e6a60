-- cmsv6 schema, version 1: fleets, devices, users, sessions, positions, alarms, commands,
-- media files, audit. Applied by `cmsv6 db upgrade` in one transaction.

CREATE TABLE fleets (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    created     timestamptz NOT NULL DEFAULT now()
);

-- phone: the terminal phone number without leading zeros (the 2013 BCD[6] and the 2019
-- BCD[10] forms of one number are the same device).
CREATE TABLE devices (
    id              bigserial PRIMARY KEY,
    phone           text NOT NULL UNIQUE CHECK (phone ~ '^[0-9a-f]{1,20}$'),
    plate           text CHECK (length(plate) <= 32),
    plate_color     smallint,
    fleet_id        bigint REFERENCES fleets ON DELETE SET NULL,
    channels        smallint NOT NULL DEFAULT 4 CHECK (channels BETWEEN 0 AND 64),
    auth_code       text,
    manufacturer    text,
    model           text,
    terminal_id     text,
    protocol        smallint,          -- 2013 or 2019, as last seen
    registered      timestamptz,
    created         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_fleet ON devices (fleet_id);

CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    password_hash   text NOT NULL,     -- scrypt$n$r$p$salt$hash
    role            text NOT NULL CHECK (role IN ('admin', 'operator')),
    created         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_fleets (
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    fleet_id    bigint NOT NULL REFERENCES fleets ON DELETE CASCADE,
    PRIMARY KEY (user_id, fleet_id)
);

-- One row per connection of a device to a gateway.
CREATE TABLE device_sessions (
    id              bigserial PRIMARY KEY,
    device_id       bigint NOT NULL REFERENCES devices ON DELETE CASCADE,
    gateway_id      text NOT NULL,
    gateway_address text,
    device_address  text,
    connected       timestamptz NOT NULL,
    disconnected    timestamptz,
    reason          text
);
CREATE INDEX device_sessions_device ON device_sessions (device_id, connected DESC);
CREATE INDEX device_sessions_open ON device_sessions (gateway_id) WHERE disconnected IS NULL;

-- Positions, partitioned by month of the device's time (partitions are created on demand
-- by the writer). digest is a hash of the report's body: a report the device sends again
-- (its acknowledgement was lost) is stored once.
CREATE TABLE positions (
    device_id   bigint NOT NULL,
    time        timestamptz NOT NULL,
    received    timestamptz NOT NULL,
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    altitude    integer NOT NULL,
    speed       real NOT NULL,
    direction   smallint NOT NULL,
    alarm       bigint NOT NULL,
    status      bigint NOT NULL,
    extras      jsonb,
    blind       boolean NOT NULL DEFAULT false,
    digest      bytea NOT NULL,
    PRIMARY KEY (device_id, time, digest)
) PARTITION BY RANGE (time);

-- The last position of each device, for the live view (kept by the writer).
CREATE TABLE last_positions (
    device_id   bigint PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    time        timestamptz NOT NULL,
    received    timestamptz NOT NULL,
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    altitude    integer NOT NULL,
    speed       real NOT NULL,
    direction   smallint NOT NULL,
    alarm       bigint NOT NULL,
    status      bigint NOT NULL,
    extras      jsonb
);

-- Alarms: from the 0x0200 alarm bits and the 1078/active-safety items. An alarm is open
-- while ended is NULL; at most one open alarm per device and kind.
CREATE TABLE alarms (
    id          bigserial PRIMARY KEY,
    device_id   bigint NOT NULL REFERENCES devices ON DELETE CASCADE,
    kind        text NOT NULL,
    started     timestamptz NOT NULL,
    ended       timestamptz,
    latitude    double precision,
    longitude   double precision,
    details     jsonb,
    state       text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'acknowledged', 'handled', 'dismissed')),
    handled     timestamptz,
    handled_by  bigint REFERENCES users ON DELETE SET NULL,
    note        text
);
CREATE UNIQUE INDEX alarms_open ON alarms (device_id, kind) WHERE ended IS NULL;
CREATE INDEX alarms_started ON alarms (started);

-- Commands sent to devices, who sent them and what came back.
CREATE TABLE commands (
    id          bigserial PRIMARY KEY,
    device_id   bigint REFERENCES devices ON DELETE SET NULL,
    user_id     bigint REFERENCES users ON DELETE SET NULL,
    msg_id      integer NOT NULL,
    body        jsonb,
    created     timestamptz NOT NULL DEFAULT now(),
    serial      integer,
    finished    timestamptz,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'replied', 'timeout', 'offline', 'failed')),
    reply       jsonb
);
CREATE INDEX commands_device ON commands (device_id, created DESC);

-- Files a device uploaded (0x0801 photos, audio, video), stored on disk.
CREATE TABLE media_files (
    id          bigserial PRIMARY KEY,
    device_id   bigint NOT NULL REFERENCES devices ON DELETE CASCADE,
    media_id    bigint NOT NULL,
    media_type  smallint NOT NULL,
    format      smallint NOT NULL,
    event       smallint NOT NULL,
    channel     smallint NOT NULL,
    time        timestamptz,
    latitude    double precision,
    longitude   double precision,
    path        text NOT NULL,
    size        integer NOT NULL,
    received    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, media_id, received)
);

CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    time        timestamptz NOT NULL DEFAULT now(),
    user_id     bigint REFERENCES users ON DELETE SET NULL,
    action      text NOT NULL,
    details     jsonb
);
