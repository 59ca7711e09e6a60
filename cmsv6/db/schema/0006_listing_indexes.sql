-- cmsv6 schema, version 6: indexes for the Open API's listings (issue 10).
-- GET /api/v1/devices/{phone}/media pages a device's files newest first, GET /api/v1/audit
-- everything newest first by time. Without these each page reads the whole table.

CREATE INDEX IF NOT EXISTS media_files_device_id ON media_files (device_id, id);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time, id);
