package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/secrets"
)

// tenantTables are the tables keyed by a customer, with the key column.
// TestEveryTableIsIsolatedOrListed keeps this list complete.
var tenantTables = map[string]string{
	"vomosync.customers": "id", "vomosync.schedules": "customer_id", "vomosync.checkpoints": "customer_id",
	"vomosync.checkpoint_decisions": "customer_id", "vomosync.poll_cycles": "customer_id",
	"vomosync.sync_state": "customer_id", "vomosync.audit_log": "customer_id", "vomosync.dead_letters": "customer_id",
	"vomosync.outbox": "customer_id", "vomosync.recon_runs": "customer_id", "vomosync.recon_gaps": "customer_id",
	"vomosync.api_budgets": "customer_id", "vomosync.api_errors": "customer_id",
	"vomosync.participation_state": "customer_id", "vomosync.console_tokens": "customer_id",
	"vomosync.console_sessions": "customer_id", "vomosync.operator_actions": "customer_id",
	"vomosync.pair_health": "customer_id", "vomo_dest.users": "customer_id",
	"vomosync.webhook_secrets": "customer_id", "vomosync.webhook_deliveries": "customer_id",
}

// notTenant are the tables not keyed by a customer, on purpose.
var notTenant = []string{"vomosync.operators", "vomosync.login_failures", "vomosync.schema_migrations"}

func newKeyring(t *testing.T) *secrets.Keyring {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	k, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(b))
	require.NoError(t, err)
	return k
}

// seedTenants writes a row of acme and of globex into every tenant table,
// as the owner.
func seedTenants(t *testing.T, db *pgtest.DB) {
	t.Helper()
	ctx := context.Background()
	store := customer.NewStore(db.Pool, newKeyring(t))
	for _, id := range []string{"acme", "globex"} {
		require.NoError(t, store.Add(ctx, customer.New{ID: id, Name: id + " name", Token: "t-" + id, Resources: []string{"users"}}))
	}
	for _, id := range []string{"acme", "globex"} {
		for _, q := range []string{
			`INSERT INTO vomosync.checkpoint_decisions (customer_id, resource, actor, strategy, reason) VALUES ($1, 'users', 'x', 'x', 'x')`,
			`INSERT INTO vomosync.poll_cycles (id, customer_id, resource, trace_id, started_at, outcome) VALUES (gen_random_uuid(), $1, 'users', 't', now(), 'success')`,
			`INSERT INTO vomosync.sync_state (customer_id, resource, record_id, external_id, source_updated_at) VALUES ($1, 'users', '1', 'e1', now())`,
			`INSERT INTO vomosync.audit_log (customer_id, resource, record_id, origin, outcome) VALUES ($1, 'users', '1', 'poll', 'applied')`,
			`INSERT INTO vomosync.dead_letters (customer_id, resource, subject, payload, error) VALUES ($1, 'users', 's', '\x00', 'e')`,
			`INSERT INTO vomosync.outbox (dedup_key, customer_id, resource, record_id, external_id, action, url, payload) VALUES ($1 || '-k', $1, 'users', '1', 'e1', 'a', 'http://x', '{}')`,
			`INSERT INTO vomosync.recon_runs (id, customer_id, resource, kind, mode, trace_id, started_at, outcome) VALUES (gen_random_uuid(), $1, 'users', 'full', 'report', 't', now(), 'success')`,
			`INSERT INTO vomosync.recon_gaps (run_id, customer_id, resource, record_id, class, cause) SELECT id, $1, 'users', '1', 'missing', 'c' FROM vomosync.recon_runs WHERE customer_id = $1`,
			`INSERT INTO vomosync.api_errors (customer_id, endpoint, status) VALUES ($1, '/users', 500)`,
			`INSERT INTO vomosync.participation_state (customer_id, key, date_id, content_hash, seen_at) VALUES ($1, 'k', 'd', '\x00', now())`,
			`INSERT INTO vomosync.console_tokens (customer_id, token_hash) VALUES ($1, sha256(convert_to($1::text, 'UTF8')))`,
			`INSERT INTO vomosync.console_sessions (token_hash, kind, customer_id, token_id, expires_at) SELECT sha256(convert_to('s' || $1::text, 'UTF8')), 'customer', $1, id, now() + interval '1 hour' FROM vomosync.console_tokens WHERE customer_id = $1`,
			`INSERT INTO vomosync.operator_actions (actor, via, action, customer_id) VALUES ('op', 'syncctl', 'pause', $1)`,
			`INSERT INTO vomo_dest.users (customer_id, external_id, source_updated_at) VALUES ($1, 'e1', now())`,
			`INSERT INTO vomosync.webhook_secrets (customer_id, ciphertext, wrapped_key, kek_id) VALUES ($1, '\x00', '\x00', 'k')`,
			`INSERT INTO vomosync.webhook_deliveries (customer_id, body_sha256) VALUES ($1, '\x00')`,
		} {
			_, err := db.Pool.Exec(ctx, q, id)
			require.NoError(t, err, q)
		}
	}
}

// counts returns, per tenant table, how many rows q sees of each customer.
func counts(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	for tab, col := range tenantTables {
		out[tab] = map[string]int{}
		for _, id := range []string{"acme", "globex"} {
			var n int
			require.NoError(t, q.QueryRow(context.Background(), `SELECT count(*) FROM `+tab+` WHERE `+col+` = $1`, id).Scan(&n), tab)
			out[tab][id] = n
		}
	}
	return out
}

func requireCode(t *testing.T, err error, code string, msgAndArgs ...any) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want SQLSTATE %s, got %v (%v)", code, err, msgAndArgs)
	require.Equal(t, code, pgErr.Code, msgAndArgs...)
}

func TestRowLevelSecurityIsolatesTenants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	seedTenants(t, db)
	service := db.AppPool(t, false)
	bare := db.AppPool(t, true)

	// The service scope sees every customer.
	for tab, c := range counts(t, service) {
		require.Positive(t, c["acme"], tab)
		require.Positive(t, c["globex"], tab)
	}
	// No tenant and no scope: nothing.
	for tab, c := range counts(t, bare) {
		require.Zero(t, c["acme"]+c["globex"], tab)
	}
	var n int
	require.NoError(t, bare.QueryRow(ctx, `SELECT count(*) FROM vomosync.audit_log`).Scan(&n))
	require.Zero(t, n, "no tenant sees nothing")
	// A tenant sees its own rows only, with or without the service scope.
	for _, pool := range []*pgxpool.Pool{service, bare} {
		require.NoError(t, postgres.WithTenant(ctx, pool, "acme", func(tx pgx.Tx) error {
			for tab, c := range counts(t, tx) {
				require.Positive(t, c["acme"], tab)
				require.Zero(t, c["globex"], tab)
			}
			return nil
		}))
	}
	// The tenant ends with the transaction: the pooled connection is bare again.
	require.NoError(t, bare.QueryRow(ctx, `SELECT count(*) FROM vomosync.customers`).Scan(&n))
	require.Zero(t, n)
	require.ErrorIs(t, postgres.WithTenant(ctx, service, "", func(pgx.Tx) error { return nil }), postgres.ErrNoTenant)

	// Cross-tenant writes: inserting a row of another customer is refused;
	// updating or deleting one touches nothing; moving a row to another
	// customer is refused.
	err := postgres.WithTenant(ctx, service, "acme", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO vomosync.api_errors (customer_id, endpoint, status) VALUES ('globex', '/x', 500)`)
		return err
	})
	requireCode(t, err, "42501", "insert for another tenant")
	for _, q := range []string{
		`UPDATE vomosync.sync_state SET deleted = true WHERE customer_id = 'globex'`,
		`DELETE FROM vomosync.dead_letters WHERE customer_id = 'globex'`,
		`UPDATE vomosync.schedules SET paused = true`,
		`DELETE FROM vomosync.audit_log WHERE customer_id = 'globex'`,
		`UPDATE vomo_dest.users SET deleted = true WHERE customer_id = 'globex'`,
	} {
		require.NoError(t, postgres.WithTenant(ctx, service, "acme", func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, q)
			if err == nil && tag.RowsAffected() > 0 && q != `UPDATE vomosync.schedules SET paused = true` {
				t.Errorf("%s touched %d rows", q, tag.RowsAffected())
			}
			return err
		}), q)
	}
	err = postgres.WithTenant(ctx, service, "acme", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE vomosync.sync_state SET customer_id = 'globex' WHERE customer_id = 'acme'`)
		return err
	})
	requireCode(t, err, "42501", "moving a row to another tenant")
	_, err = bare.Exec(ctx, `INSERT INTO vomosync.api_errors (customer_id, endpoint, status) VALUES ('acme', '/x', 500)`)
	requireCode(t, err, "42501", "no tenant writes nothing")
	var paused, globexPaused bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT bool_and(paused) FILTER (WHERE customer_id = 'acme'),
		bool_or(paused) FILTER (WHERE customer_id = 'globex') FROM vomosync.schedules`).Scan(&paused, &globexPaused))
	require.True(t, paused, "the tenant's own rows are writable")
	require.False(t, globexPaused, "the other tenant's are not")
	for tab, c := range counts(t, db.Pool) {
		require.Positive(t, c["globex"], "globex's rows of %s are all still there", tab)
	}
}

func TestAppRoleCannotChangeTheSchemaOrEscapeRLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	seedTenants(t, db)
	app := db.AppPool(t, true)
	for _, q := range []string{
		`ALTER TABLE vomosync.sync_state DISABLE ROW LEVEL SECURITY`,
		`ALTER TABLE vomosync.audit_log NO FORCE ROW LEVEL SECURITY`,
		`DROP POLICY tenant_isolation ON vomosync.customers`,
		`CREATE POLICY open ON vomosync.customers USING (true)`,
		`DROP TABLE vomosync.dead_letters`,
		`ALTER TABLE vomosync.customers ADD COLUMN x int`,
		`TRUNCATE vomosync.audit_log`,
		`CREATE TABLE vomosync.x (id int)`,
		`CREATE TABLE public.x (id int)`,
		`CREATE OR REPLACE FUNCTION vomosync.tenant_visible(customer text) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
		`ALTER VIEW vomosync.pair_health SET (security_invoker = false)`,
		`SELECT count(*) FROM vomosync.audit_log_default`,
		`SELECT vomosync.ensure_destination_schema('vomosync')`,
		`SET ROLE postgres`,
		`ALTER ROLE vomosync_app BYPASSRLS`,
		`CREATE ROLE vomosync_escape SUPERUSER`,
		`CREATE SCHEMA escape`,
	} {
		_, err := app.Exec(ctx, q)
		require.Error(t, err, q)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), q)
		require.Contains(t, []string{"42501", "P0001"}, pgErr.Code, "%s: %v", q, err)
	}
	// Turning row security off for a session does not show more: the query fails.
	conn, err := app.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET row_security = off`)
	require.NoError(t, err)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM vomosync.sync_state`).Scan(&n)
	requireCode(t, err, "42501", "row_security=off")
	_, err = conn.Exec(ctx, `RESET row_security`)
	require.NoError(t, err)

	// It owns nothing, is no superuser, and bypasses nothing.
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
		WHERE r.rolname IN ('vomosync_app', $1)`, pgtest.AppLogin).Scan(&n))
	require.Zero(t, n)
	var super, bypass bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT bool_or(rolsuper), bool_or(rolbypassrls) FROM pg_roles
		WHERE rolname IN ('vomosync_app', $1)`, pgtest.AppLogin).Scan(&super, &bypass))
	require.False(t, super)
	require.False(t, bypass)

	// The maintenance the processor runs as the role goes through the
	// owner's functions.
	svc := db.AppPool(t, false)
	var made int
	require.NoError(t, svc.QueryRow(ctx, `SELECT vomosync.ensure_audit_partitions(1)`).Scan(&made))
	require.Equal(t, 2, made)
	require.NoError(t, svc.QueryRow(ctx, `SELECT vomosync.drop_audit_partitions('30 days')`).Scan(&made))
	_, err = svc.Exec(ctx, `SELECT vomosync.ensure_destination_schema('dest_acme')`)
	require.NoError(t, err)
	require.NoError(t, postgres.WithTenant(ctx, svc, "acme", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO dest_acme.users (customer_id, external_id, source_updated_at) VALUES ('acme', 'e1', now())`)
		return err
	}))
	err = postgres.WithTenant(ctx, svc, "acme", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO dest_acme.users (customer_id, external_id, source_updated_at) VALUES ('globex', 'e1', now())`)
		return err
	})
	requireCode(t, err, "42501", "destination tables made later are isolated too")
	// The new audit partitions are reached only through the parent.
	var direct int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'vomosync.audit_log'::regclass AND has_table_privilege($1, c.oid, 'SELECT,INSERT,UPDATE,DELETE')`,
		pgtest.AppLogin).Scan(&direct))
	require.Zero(t, direct)

	// Services check the schema as the role; migrations need the owner,
	// and say so.
	require.NoError(t, postgres.CheckSchema(ctx, svc))
	_, err = postgres.Migrate(ctx, svc)
	require.ErrorContains(t, err, "schema owner's URL")
}

// A table added by a later migration must either be isolated or listed as
// not a tenant's; and the role must be granted what services use.
func TestEveryTableIsIsolatedOrListed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(ctx, `SELECT n.nspname || '.' || c.relname, c.relkind = 'v' OR c.relrowsecurity,
		EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = n.nspname AND p.tablename = c.relname),
		has_table_privilege($1, c.oid, 'SELECT')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname IN ('vomosync', 'vomo_dest') AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition`, "vomosync_app")
	require.NoError(t, err)
	var name string
	var rls, policy, granted bool
	seen := 0
	_, err = pgx.ForEachRow(rows, []any{&name, &rls, &policy, &granted}, func() error {
		seen++
		require.True(t, granted, "%s: vomosync_app has no SELECT", name)
		if slices.Contains(notTenant, name) {
			return nil
		}
		if _, ok := tenantTables[name]; !ok && name[:len("vomo_dest.")] != "vomo_dest." {
			t.Errorf("%s is neither in tenantTables nor in notTenant: enable RLS with the tenant_isolation policy (0500) or list it", name)
			return nil
		}
		require.True(t, rls, "%s: row-level security off", name)
		if name != "vomosync.pair_health" {
			require.True(t, policy, "%s: no policy", name)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, seen, len(notTenant))
}

// The customer store, as the services and syncctl use it, works as the role.
func TestCustomerStoreAsAppRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	app := db.AppPool(t, false)
	store := customer.NewStore(app, newKeyring(t))
	require.NoError(t, store.Add(ctx, customer.New{ID: "acme", Token: "t-acme", Resources: []string{"users", "groups"}}))
	require.NoError(t, store.Add(ctx, customer.New{ID: "globex", Token: "t-globex"}))
	tok, err := store.Token(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, "t-acme", tok)
	all, err := store.List(ctx)
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.NoError(t, store.SetStatus(ctx, "globex", "paused", "test"))
	require.NoError(t, store.SetSettings(ctx, "acme", []string{"users"}, customer.Settings{}))
	// Seen through a tenant, the store knows one customer.
	require.NoError(t, postgres.WithTenant(ctx, app, "acme", func(tx pgx.Tx) error {
		cs, err := customer.NewStore(tx, nil).List(ctx)
		require.NoError(t, err)
		require.Len(t, cs, 1)
		_, err = customer.NewStore(tx, nil).Get(ctx, "globex")
		require.ErrorIs(t, err, customer.ErrNotFound)
		return nil
	}))
}

// PostgreSQL refuses COPY FROM into a table with row-level security for a
// role subject to it, whatever the policy: writers that run as the
// application role insert with INSERT ... SELECT FROM unnest(...) instead
// (docs/security.md, "Known gap").
func TestCopyIntoATenantTableIsRefusedToTheRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	app := db.AppPool(t, false)
	_, err := app.CopyFrom(ctx, pgx.Identifier{"vomosync", "audit_log"}, []string{"customer_id", "resource", "record_id", "origin", "outcome"},
		pgx.CopyFromRows([][]any{{"acme", "users", "1", "poll", "applied"}}))
	requireCode(t, err, "0A000", "COPY FROM with row-level security")
	_, err = app.Exec(ctx, `INSERT INTO vomosync.audit_log (customer_id, resource, record_id, origin, outcome)
		SELECT c, 'users', r, 'poll', 'applied' FROM unnest($1::text[], $2::text[]) AS u(c, r)`, []string{"acme"}, []string{"1"})
	require.NoError(t, err, "the batch INSERT the role can use")
}

// Production migrates as an owner that is not a superuser: the migration
// must work with the rights such an owner has, and leave it the owner.
func TestMigrateAsANonSuperuserOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmpty(t)
	const owner = "vomosync_test_owner"
	_, err := db.Pool.Exec(ctx, `DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+owner+`') THEN
			BEGIN CREATE ROLE `+owner+` LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS;
			EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
		END IF; END $$`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `ALTER DATABASE `+db.Name+` OWNER TO `+owner)
	require.NoError(t, err)
	u, err := url.Parse(db.URL)
	require.NoError(t, err)
	u.User = url.User(owner)
	ownerPool, err := postgres.Connect(ctx, postgres.Settings{URL: u.String(), MaxConns: 2, ConnectTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(ownerPool.Close)
	_, err = postgres.Migrate(ctx, ownerPool)
	require.NoError(t, err)

	var foreign int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname IN ('vomosync', 'vomo_dest') AND c.relowner <> $1::regrole`, owner).Scan(&foreign))
	require.Zero(t, foreign, "the owner owns everything")
	store := customer.NewStore(ownerPool, newKeyring(t))
	require.NoError(t, store.Add(ctx, customer.New{ID: "acme", Token: "t"}))
	require.NoError(t, store.Add(ctx, customer.New{ID: "globex", Token: "t"}))
	require.NoError(t, pgtest.EnsureAppLogin(ctx, db.Pool))
	appURL, _ := url.Parse(db.URL)
	appURL.User = url.User(pgtest.AppLogin)
	app, err := postgres.Connect(ctx, postgres.Settings{URL: appURL.String(), MaxConns: 2, ConnectTimeout: 10 * time.Second, TenantOnly: true})
	require.NoError(t, err)
	t.Cleanup(app.Close)
	require.NoError(t, postgres.CheckSchema(ctx, app))
	require.NoError(t, postgres.WithTenant(ctx, app, "acme", func(tx pgx.Tx) error {
		var ids []string
		rows, err := tx.Query(ctx, `SELECT id FROM vomosync.customers`)
		require.NoError(t, err)
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Equal(t, []string{"acme"}, ids)
		return nil
	}))
	_, err = app.Exec(ctx, `ALTER TABLE vomosync.customers DISABLE ROW LEVEL SECURITY`)
	requireCode(t, err, "42501")
}
