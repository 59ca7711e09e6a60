-- cmsv6 schema, version 5: devices and users an administrator disabled (issue 10).
-- NULL: enabled; otherwise when it was disabled (`cmsv6 device disable`, `cmsv6 user
-- disable`). A disabled device is refused at registration and authentication, a disabled
-- user at login and with every token; their rows and history stay.

ALTER TABLE devices ADD COLUMN disabled timestamptz;
ALTER TABLE users ADD COLUMN disabled timestamptz;
