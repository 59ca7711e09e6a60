-- cmsv6 schema, version 4: the servers can run as a role that owns nothing (issue 9).
--
-- The writer makes a monthly partition of positions when a report for a new month arrives
-- (a device's clock, or a blind-area batch, can name any month). CREATE TABLE ... PARTITION
-- OF needs the parent's owner and CREATE on the schema, which the servers' role must not
-- have. This function, owned by the schema's owner and run with its rights (SECURITY
-- DEFINER), creates exactly that partition and nothing else: the servers' role is granted
-- EXECUTE on it (`cmsv6 db upgrade --app-role NAME`), no one else.
CREATE FUNCTION cmsv6_position_partition(year integer, month integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
-- Fixed, with pg_temp last: a caller's temporary table cannot stand in for positions.
SET search_path = public, pg_temp
AS $$
DECLARE
    starts date;
BEGIN
    IF year NOT BETWEEN 1970 AND 9998 OR month NOT BETWEEN 1 AND 12 THEN
        RAISE EXCEPTION 'no positions partition for year % month %', year, month
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    starts := make_date(year, month, 1);
    -- The same name and bounds as the partitions the writer created before this step.
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS public.%I PARTITION OF public.positions'
        ' FOR VALUES FROM (%L) TO (%L)',
        'positions_' || to_char(year, 'FM0000') || '_' || to_char(month, 'FM00'),
        to_char(starts, 'YYYY-MM-DD') || ' 00:00+00',
        to_char(starts + interval '1 month', 'YYYY-MM-DD') || ' 00:00+00');
END
$$;
REVOKE ALL ON FUNCTION cmsv6_position_partition(integer, integer) FROM PUBLIC;
