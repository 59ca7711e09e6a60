-- cmsv6 schema, version 8: positions at scale (issue 15). Daily partitions made ahead of
-- time and dropped whole by a retention setting, a default partition so that no report is
-- ever refused for want of one.
--
-- Why days (UTC): at 100 million rows over 180 days a day is ~0.6 million rows (~100 MB
-- with its index); at the gateway's target rate (20,000 positions/s) it is far more, and
-- then only today's (device_id, time, digest) index is written to, so the index the
-- inserts walk stays in memory while older days sit still on disk. One device's day is one
-- partition (two when the day asked for is a local day across UTC midnight), and retention
-- drops a day, not a week or a month, past its limit. 180 to 200 partitions are cheap for
-- PostgreSQL 15: the API's queries carry their times as constants, so the planner prunes
-- the others before opening them.
--
-- Upgrading keeps every row where it is: the monthly partitions the writer made before this
-- step stay attached (a range-partitioned table may mix sizes) and are dropped whole once
-- their last day is past retention; daily partitions begin where they end. Nothing is
-- copied, however large the table.
--
-- The primary key stays (device_id, time, digest): the writer's ON CONFLICT DO NOTHING
-- drops a report sent twice (time is in the key, so both copies meet in one partition),
-- and the same index serves GET /api/v1/devices/{phone}/positions (one device, a time
-- range, ordered by time and digest: an ordered index range scan, no sort). No BRIN or
-- other index: retention drops tables, and no query reads all devices by time.

-- Rows no partition covers: a unit whose clock says 2000 or 2099, a blind-area upload of a
-- day not made yet, reports written before maintenance first ran.
CREATE TABLE positions_default PARTITION OF positions DEFAULT;

-- The partitions of positions and their bounds (NULL for the default).
CREATE FUNCTION cmsv6_position_partitions()
RETURNS TABLE (name text, starts timestamptz, ends timestamptz)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT c.relname::text, b[1]::timestamptz, b[2]::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                   'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS b ON true
    WHERE i.inhparent = 'public.positions'::regclass
$$;

-- Make the partition of one UTC day, unless a partition covers any of it already; rows the
-- default partition holds for that day move into it. The table is made on its own, filled,
-- given a CHECK of its bounds and then attached: ATTACH takes a SHARE UPDATE EXCLUSIVE lock
-- on positions, which inserts and reads do not wait for (CREATE TABLE ... PARTITION OF
-- would take an ACCESS EXCLUSIVE one), and the CHECK spares it a scan. What it did, or NULL.
CREATE FUNCTION cmsv6_position_day(day date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp SET TimeZone = 'UTC'
AS $$
DECLARE
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    part text := 'positions_' || to_char(day, 'YYYY_MM_DD');
    moved bigint;
BEGIN
    IF day NOT BETWEEN date '1970-01-01' AND date '9998-12-31' THEN
        RAISE EXCEPTION 'no positions partition for %', day USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM cmsv6_position_partitions() p
               WHERE p.starts < hi AND p.ends > lo) THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE public.%I (LIKE public.positions INCLUDING DEFAULTS)', part);
    EXECUTE format(
        'WITH m AS (DELETE FROM public.positions_default WHERE time >= %L AND time < %L'
        ' RETURNING *) INSERT INTO public.%I SELECT * FROM m', lo, hi, part);
    GET DIAGNOSTICS moved = ROW_COUNT;
    EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I CHECK (time >= %L AND time < %L)',
                   part, part || '_bounds', lo, hi);
    EXECUTE format('ALTER TABLE public.positions ATTACH PARTITION public.%I'
                   ' FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    -- The partition's bounds say the same; the CHECK would only cost every insert.
    EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT %I', part, part || '_bounds');
    RETURN 'created ' || part || CASE WHEN moved > 0
        THEN ' with ' || moved || ' row(s) moved from positions_default' ELSE '' END;
END
$$;
REVOKE ALL ON FUNCTION cmsv6_position_day(date) FROM PUBLIC;

-- Everything maintenance does, in one call (cmsv6.db.maintenance runs it: the active login
-- server at start and hourly, `cmsv6 db maintain`): run as the schema's owner (the servers'
-- role may not create or drop tables), one at a time (an advisory lock: a second caller
-- waits, then finds nothing left to do), never waiting long for a lock (a table lock
-- queued behind a long query would stall every insert behind it: after 2 s that step is
-- skipped, said, and done on the next run). One line per thing done.
--
-- * each UTC day from yesterday to ``ahead`` days after today gets its partition, and so does each
--   day within retention that the default partition holds rows of;
-- * partitions whose every row is older than ``retention`` days (counted from the start of
--   today, UTC) are dropped whole, monthly ones from before step 8 too; 0 keeps everything;
-- * what stays in the default partition (a time outside that window: a clock decades off)
--   is kept ``retention`` days after it was received, then deleted (its time cannot be
--   trusted, so it does not decide).
CREATE FUNCTION cmsv6_position_maintain(now timestamptz, ahead integer, retention integer)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp SET TimeZone = 'UTC' SET lock_timeout = '2s'
AS $$
DECLARE
    today date := (now AT TIME ZONE 'UTC')::date;
    horizon date := today + ahead;
    cutoff timestamptz := (today - retention)::timestamp AT TIME ZONE 'UTC';
    day date;
    done text;
    p record;
    n bigint;
BEGIN
    IF ahead NOT BETWEEN 1 AND 366 OR retention < 0 THEN
        RAISE EXCEPTION 'maintenance needs 1 to 366 days ahead and a retention of 0 or more'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retention = 0 THEN
        cutoff := '-infinity';
    END IF;
    -- Waited for without a time limit: the other caller's work is short.
    PERFORM set_config('lock_timeout', '0', true);
    PERFORM pg_advisory_xact_lock(x'636d73766d'::bigint);  -- "cmsvm"
    PERFORM set_config('lock_timeout', '2s', true);
    FOR day IN
        SELECT today - 1 + i FROM generate_series(0, ahead + 1) AS i
        UNION
        SELECT (time AT TIME ZONE 'UTC')::date FROM positions_default
        WHERE time >= cutoff AND time < (horizon + 1)::timestamp AT TIME ZONE 'UTC'
        ORDER BY 1
    LOOP
        BEGIN
            done := cmsv6_position_day(day);
            IF done IS NOT NULL THEN
                RETURN NEXT done;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            RETURN NEXT 'skipped the partition of ' || day || ': positions is busy; next run';
        END;
    END LOOP;
    FOR p IN
        SELECT * FROM cmsv6_position_partitions() q WHERE q.ends <= cutoff ORDER BY q.ends
    LOOP
        BEGIN
            EXECUTE format('DROP TABLE public.%I', p.name);
            RETURN NEXT format('dropped %s (rows before %s)', p.name, to_char(p.ends, 'YYYY-MM-DD'));
        EXCEPTION WHEN lock_not_available THEN
            RETURN NEXT 'skipped dropping ' || p.name || ': positions is busy; next run';
        END;
    END LOOP;
    DELETE FROM positions_default WHERE received < cutoff;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RETURN NEXT format('deleted %s row(s) of positions_default received before %s',
                           n, to_char(cutoff, 'YYYY-MM-DD'));
    END IF;
    SELECT count(*) INTO n FROM positions_default;
    IF n > 0 THEN
        RETURN NEXT format('positions_default keeps %s row(s) with a time outside %s to %s',
                           n, CASE WHEN retention = 0 THEN 'the start' ELSE to_char(cutoff, 'YYYY-MM-DD') END,
                           horizon + 1);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION cmsv6_position_maintain(timestamptz, integer, integer) FROM PUBLIC;

-- Before this step the writer made a month's partition for each new month it saw. Monthly
-- partitions would now overlap the daily ones, so this does nothing but check its
-- arguments: writers from before the step keep working during a rolling upgrade, and rows
-- of any month land in a day's partition or in positions_default.
CREATE OR REPLACE FUNCTION cmsv6_position_partition(year integer, month integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
    IF year NOT BETWEEN 1970 AND 9998 OR month NOT BETWEEN 1 AND 12 THEN
        RAISE EXCEPTION 'no positions partition for year % month %', year, month
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
