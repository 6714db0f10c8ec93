package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/cmd/syncctl/internal/cli"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/natstest"
	"github.com/vomosync/vomosync/pkg/pgtest"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/console/auth"
	"github.com/vomosync/vomosync/services/console/consoletest"
)

// Not parallel: commands read their configuration from the process environment.
func TestInspectionCommands(t *testing.T) {
	f := consoletest.Seed(t)
	t.Setenv("DATABASE_URL", f.URL)

	code, out, errOut := run(t, "", "cycles", "--customer", "globex")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "failed: globex-secret-error")
	require.Contains(t, out, f.GlobexTrace)
	code, out, _ = run(t, "", "cycles", "--customer", "acme", "--resource", "users", "-o", "json")
	require.Equal(t, cli.ExitOK, code)
	var cycles []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &cycles))
	require.Len(t, cycles, 1)
	require.Equal(t, "success", cycles[0]["outcome"])
	code, _, _ = run(t, "", "cycles")
	require.Equal(t, cli.ExitUsage, code, "--customer is required")

	code, out, _ = run(t, "", "records", "--customer", "acme", "--resource", "users", "--id", f.AcmeRecord)
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "sync_state: version")
	require.Contains(t, out, "first_name,email")
	require.Contains(t, out, "skipped_stale")
	require.Contains(t, out, f.AcmeTrace)
	code, out, _ = run(t, "", "records", "--customer", "globex", "--resource", "users", "--id", f.GlobexRecord, "-o", "json")
	require.Equal(t, cli.ExitOK, code)
	var trail struct {
		State       *struct{}        `json:"sync_state"`
		Attempts    []map[string]any `json:"attempts"`
		DeadLetters []map[string]any `json:"dead_letters"`
		Gaps        []map[string]any `json:"gaps"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &trail))
	require.Nil(t, trail.State)
	require.Len(t, trail.Attempts, 1)
	require.Len(t, trail.DeadLetters, 1)
	require.Len(t, trail.Gaps, 1)
	_, out, _ = run(t, "", "records", "--customer", "acme", "--resource", "users", "--id", "999999")
	require.Contains(t, out, "never published")

	code, out, _ = run(t, "", "gaps", "--day", time.Now().UTC().Format(time.DateOnly))
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "missing/dead_lettered")
	require.Contains(t, out, "globex-held")
	code, _, _ = run(t, "", "gaps", "--day", "yesterday")
	require.Equal(t, cli.ExitUsage, code)

	code, out, _ = run(t, "", "api-errors", "--since", "1h", "-o", "json")
	require.Equal(t, cli.ExitOK, code)
	var errs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &errs))
	require.Len(t, errs, 1)
	require.EqualValues(t, 401, errs[0]["status"])
	_, out, _ = run(t, "", "api-errors", "--customer", "acme")
	require.NotContains(t, out, "globex")
}

func TestActionCommands(t *testing.T) {
	f := consoletest.Seed(t)
	ctx := context.Background()
	t.Setenv("DATABASE_URL", f.URL)
	id := strconv.FormatInt(f.GlobexLetter, 10)

	code, out, _ := run(t, "", "dlq", "list", "--customer", "globex", "-o", "json")
	require.Equal(t, cli.ExitOK, code)
	var letters []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &letters))
	require.Len(t, letters, 1)
	code, out, _ = run(t, "", "dlq", "show", id)
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "globex-bad-email")
	require.Contains(t, out, "undecodable", "the stored payload is not an event")
	code, _, errOut := run(t, "", "dlq", "discard", id)
	require.Equal(t, cli.ExitUsage, code, "a reason is required")
	require.Contains(t, errOut, "reason")
	code, _, _ = run(t, "", "dlq", "discard", id, "--reason", "test data")
	require.Equal(t, cli.ExitError, code, "asks first; no answer is no")
	code, out, errOut = run(t, "", "dlq", "discard", id, "--reason", "test data", "--yes")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "discard: 1 done")
	var status, by, reason string
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT status, resolved_by, resolved_reason FROM vomosync.dead_letters WHERE id = $1`, f.GlobexLetter).
		Scan(&status, &by, &reason))
	require.Equal(t, "discarded", status)
	require.True(t, strings.HasPrefix(by, "operator:"))
	require.Equal(t, "test data", reason)
	code, _, _ = run(t, "", "dlq", "discard", id, "--reason", "again", "--yes")
	require.Equal(t, cli.ExitError, code, "already resolved")

	// Retry re-publishes through the normal path with origin redrive.
	natsURL, _ := natstest.Start(t)
	nc, js, err := messaging.Connect(ctx, natsURL, "test", 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1}))
	t.Setenv("NATS_URL", natsURL)
	payload, err := proto.Marshal(&eventsv1.ChangeEvent{CustomerId: "acme", Resource: "users", RecordId: "1001",
		Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.Now(), Record: []byte(`{"id":1001}`),
		Origin: eventsv1.Origin_ORIGIN_POLL})
	require.NoError(t, err)
	var ids [2]int64
	for i := range ids {
		require.NoError(t, f.Pool.QueryRow(ctx, `INSERT INTO vomosync.dead_letters (customer_id, resource, record_id, subject, payload, error)
			VALUES ('acme', 'users', '1001', 'vomosync.changes.acme.users', $1, 'destination down') RETURNING id`, payload).Scan(&ids[i]))
	}
	code, out, errOut = run(t, "", "dlq", "retry", fmt.Sprint(ids[0]), "--yes")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "retry: 1 done")
	code, out, errOut = run(t, "", "dlq", "retry", "--customer", "acme", "--yes")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "retry: 1 done", "the one still open")
	stream, err := js.Stream(ctx, messaging.StreamChanges)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(2), info.State.Msgs, "two re-publishes, each with its own message id")
	m, err := stream.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "ORIGIN_REDRIVE", m.Header.Get(messaging.HeaderOrigin))
	var open int
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.dead_letters WHERE customer_id = 'acme' AND status = 'retried'`).Scan(&open))
	require.Equal(t, 2, open)

	// Pause and resume, of a customer and of one resource, with the reason.
	code, _, _ = run(t, "", "pause", "--customer", "acme")
	require.Equal(t, cli.ExitUsage, code, "--reason is required")
	code, out, _ = run(t, "", "pause", "--customer", "acme", "--reason", "customer migrating")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "vomosync.customers[acme].status: paused")
	code, out, _ = run(t, "", "status", "--customer", "acme")
	require.Equal(t, cli.ExitUnhealthy, code)
	require.Contains(t, out, "customer migrating")
	code, _, _ = run(t, "", "resume", "--customer", "acme", "--reason", "migration done")
	require.Equal(t, cli.ExitOK, code)
	code, _, _ = run(t, "", "pause", "--customer", "acme", "--resource", "groups", "--reason", "groups not needed")
	require.Equal(t, cli.ExitOK, code)
	var cstatus string
	var paused bool
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT c.status, s.paused FROM vomosync.customers c JOIN vomosync.schedules s
		ON s.customer_id = c.id AND s.resource = 'groups' AND s.kind = 'poll' WHERE c.id = 'acme'`).Scan(&cstatus, &paused))
	require.Equal(t, "active", cstatus)
	require.True(t, paused)
	code, _, _ = run(t, "", "pause", "--customer", "nobody", "--reason", "x")
	require.Equal(t, cli.ExitError, code)

	// Operators and customer tokens for the console.
	code, _, errOut = run(t, "short\n", "operators", "add", "--user", "bob")
	require.Equal(t, cli.ExitError, code)
	require.Contains(t, errOut, "too short")
	code, _, errOut = run(t, "a long enough passphrase\n", "operators", "add", "--user", "bob")
	require.Equal(t, cli.ExitOK, code, errOut)
	var hash string
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT password_hash FROM vomosync.operators WHERE username = 'bob'`).Scan(&hash))
	require.True(t, strings.HasPrefix(hash, "$2"), "bcrypt")
	_, err = auth.CheckPassword(ctx, f.Pool, "bob", "a long enough passphrase")
	require.NoError(t, err)
	code, out, _ = run(t, "", "console-token", "--customer", "globex", "--label", "globex it", "-o", "json")
	require.Equal(t, cli.ExitOK, code)
	var tok struct {
		Token string `json:"token"`
		ID    int64  `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &tok))
	cust, _, err := auth.CheckConsoleToken(ctx, f.Pool, tok.Token)
	require.NoError(t, err)
	require.Equal(t, "globex", cust)
	code, _, _ = run(t, "", "console-token", "--customer", "globex", "--revoke", fmt.Sprint(tok.ID))
	require.Equal(t, cli.ExitOK, code)
	_, _, err = auth.CheckConsoleToken(ctx, f.Pool, tok.Token)
	require.ErrorIs(t, err, auth.ErrBadCredentials)
	code, _, _ = run(t, "", "console-token", "--customer", "nobody")
	require.Equal(t, cli.ExitError, code)

	rows, err := f.Pool.Query(ctx, `SELECT action FROM vomosync.operator_actions WHERE via = 'syncctl' ORDER BY id`)
	require.NoError(t, err)
	var acts []string
	for rows.Next() {
		var a string
		require.NoError(t, rows.Scan(&a))
		acts = append(acts, a)
	}
	require.Equal(t, []string{"dlq_discard", "dlq_retry", "dlq_retry", "pause", "resume", "pause", "operator_add",
		"console_token_create", "console_token_revoke"}, acts, "every action recorded with its actor")
}

func TestApplyCustomerFile(t *testing.T) {
	f := consoletest.Seed(t)
	ctx := context.Background()
	t.Setenv("DATABASE_URL", f.URL)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	good := write("acme.yaml", `# acme: faster users, projects added, report-only reconciliation
id: acme
resources: [users, groups, projects]
cadences:
  users: 10m
  projects: 4h
budget_per_minute: 120
recovery: {strategy: window, window: 72h}
reconcile: {mode: report}
`)
	code, out, _ := run(t, "n\n", "apply", "-f", good)
	require.Equal(t, cli.ExitError, code)
	require.Contains(t, out, "cadences.users: (default) -> 10m0s")
	require.Contains(t, out, `resources: ["users","groups"] -> ["users","groups","projects"]`)
	require.Contains(t, out, "recovery.strategy: (default) -> window")
	var cadence time.Duration
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT cadence FROM vomosync.schedules WHERE customer_id = 'acme' AND resource = 'users' AND kind = 'poll'`).Scan(&cadence))
	require.Equal(t, 30*time.Minute, cadence, "not confirmed: unchanged")

	code, out, errOut := run(t, "", "apply", "-f", good, "--yes")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "applied")
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT cadence FROM vomosync.schedules WHERE customer_id = 'acme' AND resource = 'users' AND kind = 'poll'`).Scan(&cadence))
	require.Equal(t, 10*time.Minute, cadence)
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT cadence FROM vomosync.schedules WHERE customer_id = 'acme' AND resource = 'projects' AND kind = 'poll'`).Scan(&cadence))
	require.Equal(t, 4*time.Hour, cadence)
	var n int
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.checkpoints WHERE customer_id = 'acme' AND resource = 'projects'`).Scan(&n))
	require.Equal(t, 1, n, "a newly enabled resource starts a backfill")
	code, out, _ = run(t, "", "apply", "-f", good)
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "no changes")

	bad := write("bad.yaml", `id: acme
resources: [users, widgets]
cadences: {users: 500ms}
budget_per_minute: -5
recovery: {strategy: guess}
reconcile: {mode: fix, gap_threshold: 2}
destination: {kind: http}
`)
	code, _, errOut = run(t, "", "apply", "-f", bad, "--yes")
	require.Equal(t, cli.ExitError, code)
	for _, want := range []string{`resources[1]: "widgets" is not one of`, "cadences.users: 500ms is below the 1s minimum", "budget_per_minute",
		`recovery.strategy: "guess"`, `reconcile.mode: "fix"`, "reconcile.gap_threshold", "destination.url: required for kind http"} {
		require.Contains(t, errOut, want)
	}
	code, _, errOut = run(t, "", "apply", "-f", write("nobody.yaml", "id: nobody\nresources: [users]\n"), "--yes")
	require.Equal(t, cli.ExitError, code)
	require.Contains(t, errOut, "syncctl customers add")
}

// Every command that takes a customer, run as the application role (as
// syncctl runs in production) for acme, shows and changes acme only.
func TestCustomerCommandsTouchOnlyThatCustomer(t *testing.T) {
	f := consoletest.Seed(t)
	ctx := context.Background()
	t.Setenv("DATABASE_URL", f.AppURL)
	globex := []string{"globex", "Globex", f.GlobexTrace, "secret-error", "bad-email", "unauthorized"}
	for _, args := range [][]string{
		{"status", "--customer", "acme"},
		{"cycles", "--customer", "acme"},
		{"records", "--customer", "acme", "--resource", "users", "--id", f.AcmeRecord},
		{"records", "--customer", "acme", "--resource", "users", "--id", f.GlobexRecord},
		{"gaps", "--customer", "acme", "-o", "json"},
		{"api-errors", "--customer", "acme", "-o", "json"},
		{"cost", "--customer", "acme"},
		{"dlq", "list", "--customer", "acme", "--status", "all"},
		{"checkpoint", "show", "--customer", "acme"},
	} {
		for _, o := range []string{"table", "json"} {
			code, out, errOut := run(t, "", append(args, "-o", o)...)
			require.Contains(t, []int{cli.ExitOK, cli.ExitUnhealthy}, code, "%v: %s", args, errOut)
			for _, m := range globex {
				require.NotContains(t, out, m, "%v leaks %q", args, m)
			}
		}
	}
	// Naming another customer's record under acme finds nothing of it.
	code, out, _ := run(t, "", "records", "--customer", "acme", "--resource", "users", "--id", f.GlobexRecord, "-o", "json")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, `"attempts": []`)

	// Pausing acme as the role changes acme's rows and records it; a
	// customer that does not exist is not found.
	code, _, errOut := run(t, "", "pause", "--customer", "acme", "--reason", "isolation test")
	require.Equal(t, cli.ExitOK, code, errOut)
	code, _, _ = run(t, "", "pause", "--customer", "nobody", "--reason", "x")
	require.Equal(t, cli.ExitError, code)
	var acme, globexStatus string
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT max(status) FILTER (WHERE id = 'acme'), max(status) FILTER (WHERE id = 'globex')
		FROM vomosync.customers`).Scan(&acme, &globexStatus))
	require.Equal(t, "paused", acme)
	require.Equal(t, "active", globexStatus)
	var actions int
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.operator_actions WHERE action = 'pause' AND customer_id = 'acme'`).Scan(&actions))
	require.Equal(t, 1, actions)
}

// Every syncctl action that changes something is recorded with the
// operator who ran it; run as the application role, as in production.
func TestEveryActionIsAuditedWithItsActor(t *testing.T) {
	f := consoletest.Seed(t)
	ctx := context.Background()
	t.Setenv("DATABASE_URL", f.AppURL)
	kek := make([]byte, 32)
	for i := range kek {
		kek[i] = byte(i)
	}
	t.Setenv("VOMOSYNC_KEK", base64.StdEncoding.EncodeToString(kek))
	yaml := filepath.Join(t.TempDir(), "initech.yaml")
	require.NoError(t, os.WriteFile(yaml, []byte("id: initech\nresources: [users, groups]\n"), 0o600))
	for _, c := range []struct {
		stdin string
		args  []string
	}{
		{"tok-initech\n", []string{"customers", "add", "--id", "initech"}},
		{"", []string{"apply", "-f", yaml, "--yes"}},
		{"tok-initech-2\n", []string{"customers", "set-token", "--id", "initech"}},
		{"whsec-initech\n", []string{"customers", "set-webhook-secret", "--id", "initech"}},
		{"", []string{"checkpoint", "set", "--customer", "initech", "--resource", "users", "--to", "epoch", "--reason", "resync", "--yes"}},
		{"", []string{"pause", "--customer", "initech", "--reason", "audit test"}},
		{"", []string{"resume", "--customer", "initech", "--reason", "audit test"}},
		{"", []string{"customers", "disable", "--id", "initech", "--reason", "audit test"}},
		{"", []string{"dlq", "discard", strconv.FormatInt(f.GlobexLetter, 10), "--reason", "audit test", "--yes"}},
		{"a long enough passphrase\n", []string{"operators", "add", "--user", "carol"}},
		{"", []string{"console-token", "--customer", "acme", "--label", "audit"}},
	} {
		code, _, errOut := run(t, c.stdin, c.args...)
		require.Equal(t, cli.ExitOK, code, "%v: %s", c.args, errOut)
	}
	rows, err := f.Pool.Query(ctx, `SELECT action, actor, via, customer_id FROM vomosync.operator_actions ORDER BY id`)
	require.NoError(t, err)
	got := map[string]string{}
	var action, actor, via, cust string
	_, err = pgx.ForEachRow(rows, []any{&action, &actor, &via, &cust}, func() error {
		require.True(t, strings.HasPrefix(actor, "operator:"), "%s by %q", action, actor)
		require.Equal(t, "syncctl", via)
		got[action] = cust
		return nil
	})
	require.NoError(t, err)
	for action, cust := range map[string]string{"customer_add": "initech", "apply": "initech", "customer_set_token": "initech", "customer_set_webhook_secret": "initech",
		"checkpoint_set": "initech", "pause": "initech", "resume": "initech",
		"customer_disable": "initech", "dlq_discard": "", "operator_add": "", "console_token_create": "acme"} {
		c, ok := got[action]
		require.True(t, ok, "%s not recorded (got %v)", action, got)
		if cust != "" {
			require.Equal(t, cust, c, action)
		}
	}
	var leaked int
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.operator_actions WHERE detail::text LIKE '%tok-initech%'
		OR detail::text LIKE '%whsec%' OR detail::text LIKE '%passphrase%' OR detail::text LIKE '%vsct_%'`).Scan(&leaked))
	require.Zero(t, leaked, "no secret in the audit")
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.webhook_secrets
		WHERE position('whsec' in encode(ciphertext, 'escape')) > 0`).Scan(&leaked))
	require.Zero(t, leaked, "the webhook secret is stored encrypted")
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.webhook_secrets WHERE customer_id = 'initech'`).Scan(&leaked))
	require.Equal(t, 1, leaked)
}

// Rotation re-wraps API tokens and webhook secrets alike.
func TestRewrapCoversWebhookSecrets(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	t.Setenv("DATABASE_URL", db.AppURL())
	kek := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }
	t.Setenv("VOMOSYNC_KEK", kek(1))
	code, _, errOut := run(t, "tok-acme\n", "customers", "add", "--id", "acme")
	require.Equal(t, cli.ExitOK, code, errOut)
	code, _, errOut = run(t, "whsec-acme\n", "customers", "set-webhook-secret", "--id", "acme")
	require.Equal(t, cli.ExitOK, code, errOut)
	code, _, _ = run(t, "whsec-x\n", "customers", "set-webhook-secret", "--id", "nobody")
	require.Equal(t, cli.ExitError, code, "unknown customer")
	t.Setenv("VOMOSYNC_KEK", kek(2))
	t.Setenv("VOMOSYNC_KEK_PREVIOUS", kek(1))
	code, out, errOut := run(t, "", "customers", "rewrap")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "1 token(s) and 1 webhook secret(s) re-wrapped")
	var stale int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM vomosync.customers WHERE kek_id <> c.kek_id)
		+ (SELECT count(*) FROM vomosync.webhook_secrets WHERE kek_id <> c.kek_id)
		FROM vomosync.customers c WHERE id = 'acme'`).Scan(&stale))
	require.Zero(t, stale, "both under the new key")
}
