package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/cmd/syncctl/internal/cli"
	"github.com/vomosync/vomosync/pkg/apiclient"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/natstest"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/processor/apply"
	"github.com/vomosync/vomosync/services/processor/destination"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// snapshot checksums every table of the vomosync and destination schemas
// (partitions included). api_budgets is left out on purpose: replay draws
// real requests from the customer's shared budget, which is its point.
func snapshot(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT schemaname, tablename FROM pg_tables
		WHERE schemaname IN ('vomosync', 'vomo_dest') AND tablename <> 'api_budgets' ORDER BY 1, 2`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var s [2]string
		return s, r.Scan(&s[0], &s[1])
	})
	require.NoError(t, err)
	require.Greater(t, len(tables), 15)
	out := map[string]string{}
	for _, tb := range tables {
		name := pgx.Identifier{tb[0], tb[1]}.Sanitize()
		var n int
		var sum string
		require.NoError(t, pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text)), '')
			FROM %s t`, name)).Scan(&n, &sum))
		out[name] = fmt.Sprintf("%d rows %s", n, sum)
	}
	return out
}

// Not parallel: commands read their configuration from the process environment.
func TestReplayDryRunChangesNoRowThenPublishes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	db := pgtest.New(t)
	natsURL, _ := natstest.Start(t)
	nc, js, err := messaging.Connect(ctx, natsURL, "test", 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1}))
	s := sim.New(sim.Options{Seed: 11})
	require.NoError(t, s.AddCustomer(sim.CustomerSpec{ID: "acme", Token: "tok-acme", Users: 30}))
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	kek := base64.StdEncoding.EncodeToString(kb)
	keys, err := secrets.NewKeyring(kek)
	require.NoError(t, err)
	store := customer.NewStore(db.Pool, keys)
	require.NoError(t, store.Add(ctx, customer.New{ID: "acme", APIBaseURL: srv.URL + "/v1", Token: "tok-acme",
		Settings: customer.Settings{Settle: customer.Duration(time.Millisecond), BudgetPerMinute: 1, BudgetBurst: 1000, // a slow refill: spending shows in the bucket
			Actions: []customer.Action{{Name: "welcome", On: "first_seen", Resource: "users", URL: "http://127.0.0.1:9/welcome"}}}}))

	// A live cycle and processing: checkpoint, cycle row, sync state, audit,
	// destination rows and outbox entries exist before the replay.
	cust, err := store.Get(ctx, "acme")
	require.NoError(t, err)
	client, err := apiclient.New(db.Pool, cust, "tok-acme", nil)
	require.NoError(t, err)
	live := &poll.CollectSink{}
	res, err := (&poll.Cycler{DB: db.Pool, Log: zerolog.Nop()}).Run(ctx, poll.Request{Customer: cust, Resource: "users", Source: client, Sink: live})
	require.NoError(t, err)
	require.Equal(t, poll.OutcomeSuccess, res.Outcome)
	require.Len(t, live.Events, 30)
	msgs := make([]apply.Message, len(live.Events))
	for i, ev := range live.Events {
		msgs[i] = apply.Message{Ctx: ctx, Event: ev, Subject: messaging.ChangeSubject("acme", "users"), Attempt: 1}
	}
	_, err = (&apply.Applier{DB: db.Pool, Customers: store, Destinations: &destination.Resolver{DB: db.Pool}}).Apply(ctx, msgs)
	require.NoError(t, err)

	// The source moves on: three users change, two are new.
	for _, ev := range live.Events[:3] {
		require.NoError(t, s.Update("acme", "users", ev.GetRecordId()))
	}
	for range 2 {
		_, err := s.Create("acme", "users")
		require.NoError(t, err)
	}

	// The window ends a minute ahead: the source stamps whole seconds, so
	// records changed this second would otherwise wait for the next one.
	to := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	t.Setenv("DATABASE_URL", db.URL)
	t.Setenv("VOMOSYNC_KEK", kek)
	t.Setenv("NATS_URL", natsURL)
	var tokensBefore float64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT tokens FROM vomosync.api_budgets WHERE customer_id = 'acme'`).Scan(&tokensBefore))
	before := snapshot(t, db.Pool)

	code, out, errOut := run(t, "", "replay", "--customer", "acme", "--resource", "users", "--from", "2000-01-01T00:00:00Z", "--to", to, "-o", "json")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Equal(t, before, snapshot(t, db.Pool), "a dry run changes no row anywhere")
	var plan struct {
		Inserts, Updates, Deletes, Skipped int
		SideEffects                        int        `json:"side_effects"`
		DeadLetters                        int        `json:"dead_letters"`
		CheckpointNow                      *time.Time `json:"checkpoint_now"`
		CheckpointWould                    *time.Time `json:"checkpoint_would"`
		Ops                                []struct {
			Write       string   `json:"write"`
			SideEffects []string `json:"side_effects"`
			Changed     []string `json:"changed_fields"`
		} `json:"operations"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &plan))
	require.Equal(t, 2, plan.Inserts, out)
	require.Equal(t, 3, plan.Updates)
	require.Equal(t, 27, plan.Skipped, "versions already applied are skipped as stale")
	require.Equal(t, 2, plan.SideEffects, "each new user would get its one-time welcome")
	require.Zero(t, plan.DeadLetters)
	require.Len(t, plan.Ops, 32)
	require.NotNil(t, plan.CheckpointNow)
	require.True(t, plan.CheckpointWould.After(*plan.CheckpointNow), "the newer versions would move the checkpoint")
	var tokensAfter float64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT tokens FROM vomosync.api_budgets WHERE customer_id = 'acme'`).Scan(&tokensAfter))
	require.Less(t, tokensAfter, tokensBefore, "replay spends the customer's shared budget")

	code, out, _ = run(t, "", "replay", "--customer", "acme", "--resource", "users", "--from", "2000-01-01T00:00:00Z", "--to", to)
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "would write   2 insert(s), 3 update(s), 0 delete(s); 27 skipped as stale")
	require.Contains(t, out, "would move it to")

	// Publishing asks first, then sends every event with origin replay and
	// message ids of its own.
	stream, err := js.Stream(ctx, messaging.StreamChanges)
	require.NoError(t, err)
	code, _, errOut = run(t, "n\n", "replay", "--customer", "acme", "--resource", "users", "--from", "2000-01-01T00:00:00Z", "--to", to, "--publish")
	require.Equal(t, cli.ExitError, code)
	require.Contains(t, errOut, "not confirmed")
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs)
	code, _, errOut = run(t, "", "replay", "--customer", "acme", "--resource", "users", "--from", "2000-01-01T00:00:00Z", "--to", to, "--publish", "--yes")
	require.Equal(t, cli.ExitOK, code, errOut)
	info, err = stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(32), info.State.Msgs)
	m, err := stream.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "ORIGIN_REPLAY", m.Header.Get(messaging.HeaderOrigin))
	require.Contains(t, m.Header.Get(jetstream.MsgIDHeader), ":replay-")
	var action string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT action FROM vomosync.operator_actions WHERE customer_id = 'acme'`).Scan(&action))
	require.Equal(t, "replay_publish", action)
	require.NotEqual(t, before, snapshot(t, db.Pool), "the checksum sees the one row publishing added (the audit of the action)")
	require.True(t, strings.HasPrefix(m.Subject, "vomosync.changes.acme.users"))

	// Reconcile in process, as a dry run: the run and its gaps are recorded,
	// nothing is published. The five changed users are newer than the
	// poller's checkpoint: pending, not gaps.
	code, out, errOut = run(t, "", "reconcile", "--customer", "acme", "--resource", "users", "--dry-run", "-o", "json")
	require.Contains(t, []int{cli.ExitOK, cli.ExitUnhealthy}, code, errOut)
	var rr struct {
		ID, Mode, Outcome string
		Pending           int
		Gaps              map[string]int
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rr), out)
	require.Equal(t, "dry_run", rr.Mode)
	require.Equal(t, 5, rr.Pending, out)
	require.Empty(t, rr.Gaps)
	var mode string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT mode FROM vomosync.recon_runs WHERE id = $1`, rr.ID).Scan(&mode))
	require.Equal(t, "dry_run", mode)
	info2, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, info.State.Msgs, info2.State.Msgs, "a dry run publishes nothing")
	code, out, _ = run(t, "", "gaps", "--customer", "acme")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "dry_run")
}
