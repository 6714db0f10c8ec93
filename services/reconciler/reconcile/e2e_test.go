package reconcile_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/apiclient"
	"github.com/vomosync/vomosync/pkg/customer"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/processor"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// startProcessor runs the real processor in-process until the test ends.
func (b *testBundle) startProcessor(t *testing.T) {
	t.Helper()
	cfg := processor.DefaultConfig()
	cfg.MaxWait = 20 * time.Millisecond
	cfg.Workers = 1
	cfg.DisableOutboxSender = true
	p, err := processor.Open(b.ctx, cfg, b.db.URL, b.natsURL, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		p.Close()
	})
}

// dropSink hands every event on except those of one record: a message lost
// between the poller and the processor.
type dropSink struct {
	poll.Sink
	drop string
}

func (s dropSink) Add(ctx context.Context, ev *eventsv1.ChangeEvent) error {
	if ev.GetRecordId() == s.drop {
		return nil
	}
	return s.Sink.Add(ctx, ev)
}

func (b *testBundle) pollOnce(t *testing.T, drop string) {
	t.Helper()
	cust, err := b.customers.Get(b.ctx, custID)
	require.NoError(t, err)
	token, err := b.customers.Token(b.ctx, custID)
	require.NoError(t, err)
	client, err := apiclient.New(b.db.Pool, cust, token, nil)
	require.NoError(t, err)
	c := &poll.Cycler{DB: b.db.Pool, Log: zerolog.Nop()}
	res, err := c.Run(b.ctx, poll.Request{Customer: cust, Resource: "users", Source: client,
		Sink: dropSink{Sink: poll.NewJetStreamSink(b.js), drop: drop}})
	require.NoError(t, err)
	require.Equal(t, poll.OutcomeSuccess, res.Outcome, "%+v", res)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// Generous: the machine is shared, and -race slows the processor a lot.
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *testBundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, sql, args...).Scan(&n))
	return n
}

// The whole journey: the poller publishes, the processor applies; gaps are
// injected behind their backs (a destination row removed, a message
// dropped, a hard delete, a silent change); a reconciliation finds and
// classifies them, its repairs go through the real processor, and the
// destination ends equal to the simulator's truth.
func TestRepairThroughPollerAndProcessor(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 60, settings: customer.Settings{Settle: customer.Duration(time.Millisecond),
		Reconcile: customer.Reconcile{GapThreshold: 0.5}}})
	b.startProcessor(t)
	b.pollOnce(t, "")
	waitFor(t, "the backfill applied", func() bool {
		return b.count(t, `SELECT count(*) FROM vomosync.sync_state WHERE customer_id = $1`, custID) == 60
	})

	truth, err := b.sim.Truth(custID, sim.Users)
	require.NoError(t, err)
	removed, dropped, deleted, silent := truth[3], truth[40], truth[30], truth[12]
	b.exec(t, `DELETE FROM vomosync.sync_state WHERE customer_id = $1 AND record_id = $2`, custID, removed.ID)
	b.exec(t, `DELETE FROM vomo_dest.users WHERE customer_id = $1 AND external_id = 'vomo-' || $2`, custID, removed.ID)
	require.NoError(t, b.sim.DeleteUser(custID, deleted.ID))
	require.NoError(t, b.sim.SilentUpdate(custID, sim.Users, silent.ID))
	// The dropped update, then a later one the poller delivers: the
	// checkpoint moves past the dropped version. Whole-second clocks: wait
	// for new seconds so each is a new version inside the cycle's window.
	time.Sleep(1100 * time.Millisecond)
	require.NoError(t, b.sim.UpdateUser(custID, dropped.ID))
	require.NoError(t, b.sim.UpdateUser(custID, truth[50].ID))
	time.Sleep(1100 * time.Millisecond)
	b.pollOnce(t, dropped.ID)
	waitFor(t, "the delivered update applied", func() bool {
		return b.count(t, `SELECT count(*) FROM vomosync.sync_state WHERE customer_id = $1 AND record_id = $2 AND source_updated_at > $3`,
			custID, truth[50].ID, truth[50].UpdatedAt) == 1
	})

	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeSuccess, res.Outcome, "%+v", res)
	gaps := b.gapsByRecord(t, res.ID)
	require.Equal(t, map[string]int{"missing": 1, "stale": 1, "deleted": 1, "field_drift": 1}, res.Gaps, "%+v", gaps)
	require.Equal(t, reconcile.CauseDestinationDiffers, gaps[removed.ID].Cause, gaps[removed.ID].Detail)
	require.Equal(t, reconcile.CauseLateWrite, gaps[dropped.ID].Cause, gaps[dropped.ID].Detail)
	require.Equal(t, reconcile.CauseSourceDeleted, gaps[deleted.ID].Cause)
	require.Equal(t, reconcile.CauseSilentChange, gaps[silent.ID].Cause)
	require.Equal(t, 4, res.Repaired)

	waitFor(t, "the repairs applied", func() bool {
		return b.count(t, `SELECT count(*) FROM vomosync.audit_log WHERE customer_id = $1 AND origin = 'reconcile' AND outcome = 'applied'`, custID) == 4
	})
	require.Equal(t, 4, b.count(t, `SELECT count(*) FROM vomosync.audit_log WHERE origin = 'reconcile' AND trace_id = $1`, res.TraceID),
		"the processor's audit rows carry the run's trace")

	// The destination equals the truth: every live record at its version
	// with its fields, the deleted one marked deleted.
	now, err := b.sim.Truth(custID, sim.Users)
	require.NoError(t, err)
	rows, err := b.db.Pool.Query(b.ctx, `SELECT external_id, source_updated_at, record FROM vomo_dest.users WHERE customer_id = $1 AND NOT deleted`, custID)
	require.NoError(t, err)
	dest := map[string]json.RawMessage{}
	for rows.Next() {
		var ext string
		var at time.Time
		var rec json.RawMessage
		require.NoError(t, rows.Scan(&ext, &at, &rec))
		dest[ext] = rec
	}
	require.NoError(t, rows.Err())
	require.Len(t, dest, len(now))
	for _, r := range now {
		require.Contains(t, dest, "vomo-"+r.ID)
		diffs, moved, err := reconcile.CompareFields(dest["vomo-"+r.ID], json.RawMessage(r.Fields))
		require.NoError(t, err)
		require.False(t, moved, r.ID)
		require.Empty(t, diffs, r.ID)
	}
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM vomo_dest.users WHERE customer_id = $1 AND deleted AND external_id = 'vomo-' || $2`, custID, deleted.ID))

	again := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeReport})
	require.Zero(t, again.Actionable(), "repairs stuck: %+v", again.Gaps)
}
