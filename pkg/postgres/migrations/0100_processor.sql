-- Processor: the last applied record per sync_state row (changed-field names
-- and field drift compare against it), idempotent dead-letter rows, the
-- transactional outbox, the default destination schema, and the helpers that
-- keep the audit log in daily partitions.

-- The raw record last applied (NULL for a record only ever seen deleted).
ALTER TABLE vomosync.sync_state ADD COLUMN record jsonb;

-- A redelivered message that fails again updates its dead letter instead of
-- adding a second one: JetStream's stream sequence identifies the message.
ALTER TABLE vomosync.dead_letters ADD COLUMN stream_seq bigint;
CREATE UNIQUE INDEX dead_letters_by_message ON vomosync.dead_letters (stream_seq, subject, msg_id)
    WHERE stream_seq IS NOT NULL;

-- One-time side effects. A row is written in the transaction that first
-- records the record in sync_state, so each dedup key is enqueued once; the
-- sender delivers it with the dedup key as Idempotency-Key.
CREATE TABLE vomosync.outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedup_key       text NOT NULL UNIQUE,
    customer_id     text NOT NULL,
    resource        text NOT NULL,
    record_id       text NOT NULL,
    external_id     text NOT NULL,
    action          text NOT NULL,
    url             text NOT NULL,
    signing_key_ref text NOT NULL DEFAULT '',
    allow_private   boolean NOT NULL DEFAULT false,
    payload         jsonb NOT NULL,
    trace_id        text NOT NULL DEFAULT '',
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead_lettered')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     int,
    last_error      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX outbox_due ON vomosync.outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_by_customer ON vomosync.outbox (customer_id, created_at DESC);
CREATE INDEX outbox_finished ON vomosync.outbox (created_at) WHERE status <> 'pending';

-- Destination tables of the Postgres destination: one per resource, keyed by
-- (customer, external id), the raw record plus typed columns generated from
-- it (so the writer stays generic and the types live here only). A customer
-- may name another schema; the processor calls this for it on first use.
CREATE FUNCTION vomosync.ensure_destination_schema(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    common constant text :=
        'customer_id text NOT NULL, external_id text NOT NULL, '
        'source_updated_at timestamptz NOT NULL, deleted boolean NOT NULL DEFAULT false, '
        'deleted_at timestamptz, record jsonb, trace_id text NOT NULL DEFAULT '''', '
        'synced_at timestamptz NOT NULL DEFAULT now(), ';
    typed constant jsonb := jsonb_build_object(
        'users', jsonb_build_array('first_name', 'last_name', 'full_name', 'email', 'phone', 'address',
                                   'birthday', 'gender', 'user_status', 'membership_status', 'membership_role',
                                   'created_at'),
        'projects', jsonb_build_array('name', 'status', 'created_at'),
        'groups', jsonb_build_array('name', 'created_at'),
        'form_completions', jsonb_build_array('form_id', 'user_id', 'created_at'),
        'certificates', jsonb_build_array('name', 'created_at'),
        'campaigns', jsonb_build_array('name', 'created_at'),
        'participations', jsonb_build_array('user_id', 'project_id', 'hours', 'created_at'));
    res text;
    col text;
    cols text;
BEGIN
    IF s !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'destination schema % is not a plain lower-case identifier', s;
    END IF;
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);
    FOR res IN SELECT jsonb_object_keys(typed) LOOP
        cols := common;
        FOR col IN SELECT jsonb_array_elements_text(typed -> res) LOOP
            -- "created_at" of the source would clash with nothing, but name it
            -- source_created_at so it is not read as the row's own.
            cols := cols || format('%I text GENERATED ALWAYS AS (record ->> %L) STORED, ',
                CASE col WHEN 'created_at' THEN 'source_created_at' ELSE col END, col);
        END LOOP;
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I.%I (%s PRIMARY KEY (customer_id, external_id))', s, res, cols);
    END LOOP;
END
$fn$;

SELECT vomosync.ensure_destination_schema('vomo_dest');
CREATE INDEX IF NOT EXISTS users_by_email ON vomo_dest.users (customer_id, lower(email));

-- Daily audit partitions named audit_log_pYYYYMMDD. Rows already in the
-- default partition for a day (a first start, a gap in maintenance) are moved
-- into the new partition, so creating one never fails on them.
CREATE FUNCTION vomosync.ensure_audit_partitions(days_ahead int) RETURNS int
LANGUAGE plpgsql AS $fn$
DECLARE
    d date;
    part text;
    made int := 0;
BEGIN
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

-- Drops daily partitions wholly older than the retention and deletes expired
-- rows that landed in the default partition. Returns partitions dropped.
CREATE FUNCTION vomosync.drop_audit_partitions(retention interval) RETURNS int
LANGUAGE plpgsql AS $fn$
DECLARE
    part text;
    dropped int := 0;
    cutoff date := (now() - retention)::date;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = p.relnamespace
        WHERE n.nspname = 'vomosync' AND p.relname = 'audit_log' AND c.relname ~ '^audit_log_p[0-9]{8}$'
    LOOP
        IF to_date(substr(part, 12), 'YYYYMMDD') + 1 <= cutoff THEN
            EXECUTE format('DROP TABLE vomosync.%I', part);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    DELETE FROM vomosync.audit_log_default WHERE processed_at < cutoff;
    RETURN dropped;
END
$fn$;
