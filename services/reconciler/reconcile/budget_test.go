package reconcile_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/apiclient"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
)

// The poller and a full reconciliation of the same customer under a tight
// budget: both make progress, and together they never send more than the
// customer's budget allows (burst + rate × elapsed), counted at the simulator.
func TestPollerAndReconcilerShareTheBudget(t *testing.T) {
	t.Parallel()
	const perMinute, burst = 600, 5 // 10 requests a second
	b := setup(t, setupOpts{users: 150, settings: customer.Settings{BudgetPerMinute: perMinute, BudgetBurst: burst,
		Settle: customer.Duration(time.Millisecond)}})
	cust, err := b.customers.Get(b.ctx, custID)
	require.NoError(t, err)
	token, err := b.customers.Token(b.ctx, custID)
	require.NoError(t, err)
	client, err := apiclient.New(b.db.Pool, cust, token, nil)
	require.NoError(t, err)
	cycler := &poll.Cycler{DB: b.db.Pool, Log: zerolog.Nop()}

	start := time.Now()
	type outcome struct {
		res *reconcile.RunResult
		err error
	}
	recDone := make(chan outcome, 1)
	go func() {
		res, err := b.rec.Run(b.ctx, reconcile.Request{Customer: custID, Resource: "users", Full: true, Mode: reconcile.ModeReport})
		recDone <- outcome{res, err}
	}()
	// The poller on a compressed cadence: a cycle every 200ms. It has
	// priority; the reconciliation uses what it leaves.
	pctx, stopPolling := context.WithCancel(b.ctx)
	var cycles atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for pctx.Err() == nil {
			res, err := cycler.Run(pctx, poll.Request{Customer: cust, Resource: "users", Source: client, Sink: &poll.CollectSink{}})
			if err == nil && res.Outcome == poll.OutcomeSuccess {
				cycles.Add(1)
			}
			select {
			case <-pctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	var got outcome
	select {
	case got = <-recDone:
	case <-time.After(60 * time.Second):
		t.Fatal("the reconciliation did not finish beside the poller")
	}
	waitFor(t, "three poll cycles", func() bool { return cycles.Load() >= 3 })
	stopPolling()
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	rec, recErr := got.res, got.err

	require.NoError(t, recErr)
	require.Equal(t, 150, rec.SourceRecords, "the reconciliation walked everything")
	sent := 0
	for _, n := range b.sim.RequestCounts(custID) {
		sent += n
	}
	limit := float64(burst) + elapsed*perMinute/60 + 1
	require.LessOrEqual(t, float64(sent), limit, "%d requests in %.1fs", sent, elapsed)
	require.GreaterOrEqual(t, sent, 10+rec.Requests, "both spent requests")
	t.Logf("%d requests in %.1fs (limit %.0f): reconciliation %d, poller %d cycles", sent, elapsed, limit, rec.Requests, cycles.Load())
}
