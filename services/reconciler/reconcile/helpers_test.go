package reconcile_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/natstest"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/pkg/vomo"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

const custID = "acme"

// testBundle is one isolated world: a database, a JetStream server, a
// simulator serving one customer, and a reconciler on them.
type testBundle struct {
	ctx       context.Context
	db        *pgtest.DB
	natsURL   string
	js        jetstream.JetStream
	sim       *sim.Sim
	srv       *httptest.Server
	customers *customer.Store
	metrics   *metrics.Reconciler
	rec       *reconcile.Reconciler
}

type setupOpts struct {
	users    int
	settings customer.Settings
}

func setup(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	db := pgtest.New(t)
	url, _ := natstest.Start(t)
	nc, js, err := messaging.Connect(ctx, url, "reconcile-test", 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.NoError(t, messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1}))

	s := sim.New(sim.Options{Seed: 7})
	require.NoError(t, s.AddCustomer(sim.CustomerSpec{ID: custID, Token: "tok-" + custID, Users: o.users}))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	kek := sha256.Sum256([]byte(t.Name()))
	keys, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(kek[:]))
	require.NoError(t, err)
	customers := customer.NewStore(db.Pool, keys)
	st := o.settings
	if st.BudgetPerMinute == 0 {
		st.BudgetPerMinute = -1
	}
	require.NoError(t, customers.Add(ctx, customer.New{ID: custID, APIBaseURL: srv.URL + "/v1", Token: "tok-" + custID, Settings: st}))

	m := metrics.NewReconciler(prometheus.NewRegistry())
	rec := &reconcile.Reconciler{DB: db.Pool, JS: js, Customers: customers, Metrics: m,
		Log:           zerolog.New(zerolog.NewTestWriter(t)),
		ClientOptions: []vomo.Option{vomo.WithBackoff(time.Millisecond, 5*time.Millisecond)},
		SettleTimeout: 30 * time.Second}
	return &testBundle{ctx: ctx, db: db, natsURL: url, js: js, sim: s, srv: srv, customers: customers, metrics: m, rec: rec}
}

// deliverAll models a destination that received the simulator's current
// truth: sync_state and an applied audit row per record, a successful poll
// cycle over [from, to] and the checkpoint at the newest version.
func (b *testBundle) deliverAll(t *testing.T) []sim.TruthRecord {
	t.Helper()
	truth, err := b.sim.Truth(custID, sim.Users)
	require.NoError(t, err)
	var newest time.Time
	ids := make([]string, len(truth))
	ats := make([]time.Time, len(truth))
	raws := make([][]byte, len(truth))
	for i, r := range truth {
		ids[i], ats[i], raws[i] = r.ID, r.UpdatedAt, r.Fields
		if r.UpdatedAt.After(newest) {
			newest = r.UpdatedAt
		}
	}
	recs := make([]string, len(raws))
	for i, r := range raws {
		recs[i] = string(r)
	}
	_, err = b.db.Pool.Exec(b.ctx, `INSERT INTO vomosync.sync_state (customer_id, resource, record_id, external_id, source_updated_at, applied_at, record)
		SELECT $1, 'users', id, 'vomo-' || id, at, now() - interval '1 hour', rec::jsonb
		FROM unnest($2::text[], $3::timestamptz[], $4::text[]) AS u(id, at, rec)`,
		custID, ids, ats, recs)
	require.NoError(t, err)
	// The destination rows the processor writes with them (full runs
	// compare the Postgres destination with sync_state).
	_, err = b.db.Pool.Exec(b.ctx, `INSERT INTO vomo_dest.users (customer_id, external_id, source_updated_at, record)
		SELECT $1, 'vomo-' || id, at, rec::jsonb FROM unnest($2::text[], $3::timestamptz[], $4::text[]) AS u(id, at, rec)`,
		custID, ids, ats, recs)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(b.ctx, `INSERT INTO vomosync.audit_log (customer_id, resource, record_id, record_updated_at, processed_at, trace_id, origin, outcome)
		SELECT $1, 'users', id, at, now() - interval '1 hour', 'poll-trace', 'poll', 'applied' FROM unnest($2::text[], $3::timestamptz[]) AS u(id, at)`,
		custID, ids, ats)
	require.NoError(t, err)
	b.pollCycle(t, time.Unix(0, 0), newest)
	b.setCheckpoint(t, newest)
	return truth
}

func (b *testBundle) pollCycle(t *testing.T, from, to time.Time) {
	t.Helper()
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO vomosync.poll_cycles (id, customer_id, resource, trace_id, window_from, window_to, started_at, finished_at, outcome)
		VALUES ($1, $2, 'users', 'poll-trace', $3, $4, now(), now(), 'success')`, uuid.NewString(), custID, from, to)
	require.NoError(t, err)
}

func (b *testBundle) setCheckpoint(t *testing.T, at time.Time) {
	t.Helper()
	_, err := b.db.Pool.Exec(b.ctx, `UPDATE vomosync.checkpoints SET position = $2 WHERE customer_id = $1 AND resource = 'users'`, custID, at)
	require.NoError(t, err)
}

func (b *testBundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := b.db.Pool.Exec(b.ctx, sql, args...)
	require.NoError(t, err)
}

func (b *testBundle) run(t *testing.T, req reconcile.Request) *reconcile.RunResult {
	t.Helper()
	req.Customer, req.Resource = custID, "users"
	res, err := b.rec.Run(b.ctx, req)
	require.NoError(t, err)
	return res
}

// gapsByRecord returns the run's recorded gaps keyed by record id.
func (b *testBundle) gapsByRecord(t *testing.T, runID string) map[string]reconcile.Gap {
	t.Helper()
	gaps, err := reconcile.ListGaps(b.ctx, b.db.Pool, reconcile.GapFilter{RunID: runID, Limit: 10000})
	require.NoError(t, err)
	out := map[string]reconcile.Gap{}
	for _, g := range gaps {
		out[g.RecordID] = g
	}
	return out
}

type published struct {
	ev    *eventsv1.ChangeEvent
	msgID string
}

// published returns every change event in the stream, by record id.
func (b *testBundle) published(t *testing.T) map[string]published {
	t.Helper()
	st, err := b.js.Stream(b.ctx, messaging.StreamChanges)
	require.NoError(t, err)
	info, err := st.Info(b.ctx)
	require.NoError(t, err)
	out := map[string]published{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(b.ctx, seq)
		require.NoError(t, err)
		ev, err := messaging.Decode(m.Data)
		require.NoError(t, err)
		out[ev.GetRecordId()] = published{ev: ev, msgID: m.Header.Get("Nats-Msg-Id")}
	}
	return out
}

func pick(truth []sim.TruthRecord, i int) sim.TruthRecord { return truth[i] }

func settingsThreshold(th float64) customer.Settings {
	return customer.Settings{Reconcile: customer.Reconcile{GapThreshold: th}}
}
