-- cmsv6 schema, version 3: device identity (issue 9). Auth codes are kept only as a salted
-- SHA-256 (cmsv6.db.devices explains why not scrypt); devices that open registration
-- added are marked so that it can be bounded.

ALTER TABLE devices
    ADD COLUMN auth_salt bytea,
    ADD COLUMN auth_hash bytea,
    ADD COLUMN self_registered boolean NOT NULL DEFAULT false;

-- Existing codes are hashed in place, so the devices holding them still authenticate:
-- a 16-byte random salt each (gen_random_uuid is built in since PostgreSQL 13; its 122
-- random bits are plenty for a salt), then SHA-256(salt || code).
UPDATE devices SET auth_salt = uuid_send(gen_random_uuid()) WHERE auth_code IS NOT NULL;
UPDATE devices SET auth_hash = sha256(auth_salt || convert_to(auth_code, 'UTF8'))
    WHERE auth_code IS NOT NULL;
ALTER TABLE devices DROP COLUMN auth_code;

ALTER TABLE devices
    ADD CONSTRAINT devices_auth_hash CHECK (length(auth_hash) = 32),
    ADD CONSTRAINT devices_auth_pair CHECK ((auth_hash IS NULL) = (auth_salt IS NULL));

-- Open registration's bound per hour counts the devices it added recently.
CREATE INDEX devices_self_registered ON devices (created) WHERE self_registered;
