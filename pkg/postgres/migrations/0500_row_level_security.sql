-- Security: services run as vomosync_app, a role that owns nothing (DML on
-- the control-plane tables, no DDL, cannot turn row-level security off), and
-- every table keyed by a customer is filtered by row-level security.
--
-- A connection sees a customer's rows only when it names the customer
-- (SET LOCAL vomosync.tenant = 'acme', postgres.WithTenant) or carries the
-- all-tenants service scope (vomosync.scope = 'all', set by postgres.Connect
-- for the services that serve every customer). A connection that sets
-- neither sees nothing and can write nothing. A tenant narrows the service
-- scope: customer-scoped code paths set it even on a service connection.
--
-- The owner (who runs `syncctl migrate`) is not subject to these policies;
-- the application role never is the owner. See docs/security.md.

-- Roles are cluster-wide: parallel migrations of other databases (tests, a
-- second deployment on the same cluster) may create it at the same moment,
-- and advisory locks are per database, so a duplicate is simply accepted.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vomosync_app') THEN
        BEGIN
            CREATE ROLE vomosync_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role vomosync_app does not exist and % may not create it: run CREATE ROLE vomosync_app NOLOGIN as an administrator, then migrate again', current_user;
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vomosync_app' AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'role vomosync_app must not be a superuser or bypass row-level security';
    END IF;
    -- USAGE, not MEMBER: since PostgreSQL 16 a CREATEROLE owner holds an
    -- ADMIN-only grant on the roles it creates, which confers no privileges.
    IF pg_has_role(current_user, 'vomosync_app', 'USAGE') AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'migrate as the schema owner, not as a login of vomosync_app (%)', current_user;
    END IF;
END
$$;

-- Fail closed: no tenant and no service scope is false, an empty tenant is
-- no tenant. Inlined into every policy (plain SQL, STABLE).
CREATE FUNCTION vomosync.tenant_visible(customer text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT CASE
        WHEN coalesce(current_setting('vomosync.tenant', true), '') <> ''
            THEN customer = current_setting('vomosync.tenant', true)
        ELSE coalesce(current_setting('vomosync.scope', true), '') = 'all'
    END
$fn$;

GRANT USAGE ON SCHEMA vomosync TO vomosync_app;
-- Nobody but the owner creates objects (PostgreSQL 15 already revokes this
-- from PUBLIC; older clusters do not).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Tenant tables: RLS with one policy for reads and writes (USING filters
-- what is seen, updated and deleted; WITH CHECK refuses rows written for
-- another customer). The audit log is partitioned: the policy sits on the
-- parent, and the role gets no grant on any partition, so every access goes
-- through the parent and its policy.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('customers', 'id'), ('schedules', 'customer_id'), ('checkpoints', 'customer_id'),
        ('checkpoint_decisions', 'customer_id'), ('poll_cycles', 'customer_id'), ('sync_state', 'customer_id'),
        ('audit_log', 'customer_id'), ('dead_letters', 'customer_id'), ('outbox', 'customer_id'),
        ('recon_runs', 'customer_id'), ('recon_gaps', 'customer_id'), ('api_budgets', 'customer_id'),
        ('api_errors', 'customer_id'), ('participation_state', 'customer_id'), ('console_tokens', 'customer_id'),
        ('console_sessions', 'customer_id'), ('operator_actions', 'customer_id')) AS v(tab, col)
    LOOP
        EXECUTE format('ALTER TABLE vomosync.%I ENABLE ROW LEVEL SECURITY', t.tab);
        EXECUTE format('CREATE POLICY tenant_isolation ON vomosync.%I USING (vomosync.tenant_visible(%I)) WITH CHECK (vomosync.tenant_visible(%I))',
            t.tab, t.col, t.col);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON vomosync.%I TO vomosync_app', t.tab);
    END LOOP;
END
$$;

-- Not keyed by a customer: operators and the login rate limit (looked up
-- before anyone is known), and the migration record services check.
GRANT SELECT, INSERT, UPDATE, DELETE ON vomosync.operators, vomosync.login_failures TO vomosync_app;
GRANT SELECT ON vomosync.schema_migrations TO vomosync_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA vomosync TO vomosync_app;

-- A view runs with its owner's rights by default, and the owner is not
-- subject to RLS: pair_health must read with the caller's.
ALTER VIEW vomosync.pair_health SET (security_invoker = true);
GRANT SELECT ON vomosync.pair_health TO vomosync_app;

-- The processor's DDL (audit partitions, destination tables) runs as the
-- owner through these functions only; the role may call them, nothing else.
ALTER FUNCTION vomosync.ensure_audit_partitions(int) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION vomosync.drop_audit_partitions(interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION vomosync.ensure_audit_partitions(int), vomosync.drop_audit_partitions(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vomosync.ensure_audit_partitions(int), vomosync.drop_audit_partitions(interval) TO vomosync_app;

-- Destination tables: the same isolation (keyed by customer_id), granted to
-- the role when created. A schema name that is ours or the system's is
-- refused, since the function runs with the owner's rights.
CREATE OR REPLACE FUNCTION vomosync.ensure_destination_schema(s text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
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
    IF s IN ('vomosync', 'public', 'information_schema') OR s LIKE 'pg\_%' THEN
        RAISE EXCEPTION 'destination schema % is reserved', s;
    END IF;
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO vomosync_app', s);
    FOR res IN SELECT jsonb_object_keys(typed) LOOP
        cols := common;
        FOR col IN SELECT jsonb_array_elements_text(typed -> res) LOOP
            cols := cols || format('%I text GENERATED ALWAYS AS (record ->> %L) STORED, ',
                CASE col WHEN 'created_at' THEN 'source_created_at' ELSE col END, col);
        END LOOP;
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I.%I (%s PRIMARY KEY (customer_id, external_id))', s, res, cols);
        EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', s, res);
        IF NOT EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = s AND p.tablename = res AND p.policyname = 'tenant_isolation') THEN
            EXECUTE format('CREATE POLICY tenant_isolation ON %I.%I USING (vomosync.tenant_visible(customer_id)) WITH CHECK (vomosync.tenant_visible(customer_id))', s, res);
        END IF;
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO vomosync_app', s, res);
    END LOOP;
END
$fn$;
REVOKE EXECUTE ON FUNCTION vomosync.ensure_destination_schema(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vomosync.ensure_destination_schema(text) TO vomosync_app;

-- Every destination schema made so far (vomo_dest and any a customer named).
SELECT vomosync.ensure_destination_schema(n.nspname)
FROM pg_namespace n
WHERE n.nspname NOT IN ('vomosync', 'public', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              WHERE c.relnamespace = n.oid AND c.relname = 'users' AND a.attname = 'external_id');
