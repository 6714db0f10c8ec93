-- Partition maintenance takes the audit log's table lock first, before any
-- partition's: creating or dropping a partition locks the parent anyway, and
-- taking it up front means it never holds a partition lock while waiting for
-- the parent, so it cannot deadlock with the processor's writes or readers.
-- It only locks when there is something to do.

CREATE OR REPLACE FUNCTION vomosync.ensure_audit_partitions(days_ahead int) RETURNS int
LANGUAGE plpgsql AS $fn$
DECLARE
    d date;
    part text;
    made int := 0;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM generate_series(current_date, current_date + days_ahead, interval '1 day') AS g(day)
        WHERE to_regclass('vomosync.audit_log_p' || to_char(g.day, 'YYYYMMDD')) IS NULL) THEN
        RETURN 0;
    END IF;
    LOCK TABLE vomosync.audit_log IN ACCESS EXCLUSIVE MODE;
    FOR d IN SELECT generate_series(current_date, current_date + days_ahead, interval '1 day')::date LOOP
        part := 'audit_log_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('vomosync.' || part) IS NOT NULL;
        IF EXISTS (SELECT 1 FROM vomosync.audit_log_default WHERE processed_at >= d AND processed_at < d + 1) THEN
            EXECUTE format('CREATE TABLE vomosync.%I (LIKE vomosync.audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
            EXECUTE format('WITH moved AS (DELETE FROM vomosync.audit_log_default
                                WHERE processed_at >= %L AND processed_at < %L RETURNING *)
                            INSERT INTO vomosync.%I SELECT * FROM moved', d, d + 1, part);
            EXECUTE format('ALTER TABLE vomosync.audit_log ATTACH PARTITION vomosync.%I FOR VALUES FROM (%L) TO (%L)', part, d, d + 1);
        ELSE
            EXECUTE format('CREATE TABLE vomosync.%I PARTITION OF vomosync.audit_log FOR VALUES FROM (%L) TO (%L)', part, d, d + 1);
        END IF;
        made := made + 1;
    END LOOP;
    RETURN made;
END
$fn$;

CREATE OR REPLACE FUNCTION vomosync.drop_audit_partitions(retention interval) RETURNS int
LANGUAGE plpgsql AS $fn$
DECLARE
    part text;
    expired text[];
    cutoff date := (now() - retention)::date;
BEGIN
    SELECT coalesce(array_agg(c.relname), '{}') INTO expired
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = p.relnamespace
    WHERE n.nspname = 'vomosync' AND p.relname = 'audit_log' AND c.relname ~ '^audit_log_p[0-9]{8}$'
      AND to_date(substr(c.relname, 12), 'YYYYMMDD') + 1 <= cutoff;
    IF cardinality(expired) > 0 THEN
        LOCK TABLE vomosync.audit_log IN ACCESS EXCLUSIVE MODE;
        FOREACH part IN ARRAY expired LOOP
            EXECUTE format('DROP TABLE vomosync.%I', part);
        END LOOP;
    END IF;
    DELETE FROM vomosync.audit_log_default WHERE processed_at < cutoff;
    RETURN cardinality(expired);
END
$fn$;
