// Package consoletest seeds a test database with two customers whose state
// differs in every way the console shows, plus an operator and a console
// token, for the handler, isolation and browser tests.
package consoletest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/services/console/auth"
	"github.com/vomosync/vomosync/services/console/web"
	"github.com/vomosync/vomosync/services/processor/deadletter"
)

// Fixture is what Seed created.
type Fixture struct {
	// Pool is the owner's; the fixture is written with it.
	Pool *pgxpool.Pool
	URL  string // database URL, as the owner
	// App and AppURL connect as the application role with the service
	// scope, as the console and syncctl do in production; Server uses App.
	App    *pgxpool.Pool
	AppURL string
	// Operator and Password log in as an operator.
	Operator, Password string
	// AcmeToken shows acme its own health; nothing of globex.
	AcmeToken string
	// Records and traces the tests look for.
	AcmeRecord, GlobexRecord string
	AcmeTrace, GlobexTrace   string
	GlobexLetter             int64
}

// Trace ids are 32 hex digits, like OpenTelemetry's.
const (
	acmeTrace   = "4bf92f3577b34da6a3ce929d0e0e4736"
	globexTrace = "0af7651916cd43dd8448eb211c80319c"
)

// Seed creates the fixture in a fresh database.
func Seed(t testing.TB) *Fixture {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	keys, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(kb))
	must(t, err)
	store := customer.NewStore(db.Pool, keys)
	must(t, store.Add(ctx, customer.New{ID: "acme", Name: "Acme Volunteers", Token: "t-acme", Resources: []string{"users", "groups"}}))
	must(t, store.Add(ctx, customer.New{ID: "globex", Name: "Globex Relief", Token: "t-globex", Resources: []string{"users"}}))
	f := &Fixture{Pool: db.Pool, URL: db.URL, App: db.AppPool(t, false), AppURL: db.AppURL(), Operator: "alice", Password: "correct horse battery", AcmeRecord: "1001",
		GlobexRecord: "2002", AcmeTrace: acmeTrace, GlobexTrace: globexTrace}
	now := time.Now().UTC().Truncate(time.Second)
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, sql, args...)
		must(t, err)
	}
	// acme: healthy, polled a minute ago, checkpoint ten minutes behind.
	exec(`UPDATE vomosync.schedules SET last_started_at = $1, last_finished_at = $1, last_outcome = 'success'
		WHERE customer_id = 'acme' AND kind = 'poll'`, now.Add(-time.Minute))
	exec(`UPDATE vomosync.checkpoints SET position = $1 WHERE customer_id = 'acme'`, now.Add(-10*time.Minute))
	exec(`INSERT INTO vomosync.poll_cycles (id, customer_id, resource, trace_id, window_from, window_to, checkpoint_before,
		checkpoint_after, pages, requests, records_seen, records_published, started_at, finished_at, duration_ms, outcome)
		VALUES (gen_random_uuid(), 'acme', 'users', $1, $2, $3, $2, $3, 1, 1, 2, 2, $4, $4, 120, 'success')`,
		acmeTrace, now.Add(-20*time.Minute), now.Add(-10*time.Minute), now.Add(-time.Minute))
	exec(`INSERT INTO vomosync.audit_log (customer_id, resource, record_id, record_updated_at, processed_at, trace_id, origin, outcome, changed_fields)
		VALUES ('acme', 'users', $1, $2, $3, $4, 'poll', 'applied', '{first_name,email}'),
		       ('acme', 'users', $1, $5, $6, $4, 'poll', 'skipped_stale', NULL)`,
		f.AcmeRecord, now.Add(-12*time.Minute), now.Add(-50*time.Second), acmeTrace, now.Add(-30*time.Minute), now.Add(-40*time.Second))
	exec(`INSERT INTO vomosync.sync_state (customer_id, resource, record_id, external_id, source_updated_at, trace_id)
		VALUES ('acme', 'users', $1, 'vomo-' || $1, $2, $3)`, f.AcmeRecord, now.Add(-12*time.Minute), acmeTrace)
	// globex: last poll failed, token rejected, dead letters, a held reconciliation.
	exec(`UPDATE vomosync.schedules SET last_started_at = $1, last_finished_at = $1, last_outcome = 'failed'
		WHERE customer_id = 'globex' AND kind = 'poll'`, now.Add(-2*time.Minute))
	exec(`INSERT INTO vomosync.poll_cycles (id, customer_id, resource, trace_id, started_at, finished_at, duration_ms, outcome, error)
		VALUES (gen_random_uuid(), 'globex', 'users', $1, $2, $2, 80, 'failed', 'globex-secret-error: 401 from VOMO')`,
		globexTrace, now.Add(-2*time.Minute))
	exec(`INSERT INTO vomosync.audit_log (customer_id, resource, record_id, processed_at, trace_id, origin, outcome, error)
		VALUES ('globex', 'users', $1, $2, $3, 'poll', 'dead_lettered', 'globex-bad-email')`, f.GlobexRecord, now.Add(-3*time.Minute), globexTrace)
	must(t, db.Pool.QueryRow(ctx, `INSERT INTO vomosync.dead_letters (customer_id, resource, record_id, subject, payload, error, error_class, trace_id)
		VALUES ('globex', 'users', $1, 'vomosync.changes.globex.users', '\x00', 'globex-bad-email', 'validation', $2) RETURNING id`,
		f.GlobexRecord, globexTrace).Scan(&f.GlobexLetter))
	exec(`INSERT INTO vomosync.recon_runs (id, customer_id, resource, kind, mode, trace_id, expected, gaps, gap_rate, held, held_reason, started_at, outcome)
		VALUES ('00000000-0000-0000-0000-000000000001', 'globex', 'users', 'incremental', 'repair', $1, 100, '{"missing": 5}', 0.05, true,
		'globex-held: gap rate over threshold', $2, 'held')`, globexTrace, now.Add(-time.Hour))
	exec(`INSERT INTO vomosync.recon_gaps (run_id, customer_id, resource, record_id, class, cause, found_at)
		VALUES ('00000000-0000-0000-0000-000000000001', 'globex', 'users', $1, 'missing', 'dead_lettered', $2)`, f.GlobexRecord, now.Add(-time.Hour))
	exec(`INSERT INTO vomosync.api_errors (customer_id, endpoint, status, error, trace_id) VALUES ('globex', '/users', 401, 'globex-unauthorized', $1)`, globexTrace)
	must(t, auth.AddOperator(ctx, db.Pool, f.Operator, f.Password, "test"))
	f.AcmeToken, _, err = auth.NewConsoleToken(ctx, db.Pool, "acme", "test", "test", 0)
	must(t, err)
	return f
}

// Server starts the console on an httptest server over f's database,
// connected as the application role; options adjust the server before it
// starts.
func Server(t testing.TB, f *Fixture, jaeger string, options ...func(*web.Server)) *httptest.Server {
	t.Helper()
	s := &web.Server{DB: f.App, Sessions: auth.Sessions{DB: f.App, Key: []byte("test-session-key-0123456789abcdef")},
		UserLimit: auth.Limiter{DB: f.App, Max: 5}, AddrLimit: auth.Limiter{DB: f.App, Max: 50},
		DLQ: &deadletter.Store{DB: f.App}, JaegerURL: jaeger, Log: zerolog.Nop()}
	for _, o := range options {
		o(s)
	}
	h, err := s.Handler()
	must(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
