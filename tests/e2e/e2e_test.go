package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/messaging"
)

// gapReport compares vomosync's per-record state with the simulator's truth.
type gapReport struct {
	missing, stale, notDeleted int
	example                    string
}

func (g gapReport) zero(withDeletes bool) bool {
	return g.missing == 0 && g.stale == 0 && (!withDeletes || g.notDeleted == 0)
}

func (g gapReport) String() string {
	return fmt.Sprintf("missing=%d stale=%d not_deleted=%d e.g. %s", g.missing, g.stale, g.notDeleted, g.example)
}

func (s *stack) gaps(customerID string) gapReport {
	s.t.Helper()
	truth, err := s.sim.Truth(customerID, "users")
	require.NoError(s.t, err)
	rows, err := s.pool.Query(s.ctx, `SELECT record_id, source_updated_at, deleted FROM vomosync.sync_state
		WHERE customer_id = $1 AND resource = 'users'`, customerID)
	require.NoError(s.t, err)
	type st struct {
		at      time.Time
		deleted bool
	}
	have := map[string]st{}
	for rows.Next() {
		var id string
		var v st
		require.NoError(s.t, rows.Scan(&id, &v.at, &v.deleted))
		have[id] = v
	}
	require.NoError(s.t, rows.Err())
	var g gapReport
	live := map[string]bool{}
	for _, r := range truth {
		live[r.ID] = true
		h, ok := have[r.ID]
		switch {
		case !ok || h.deleted:
			g.missing++
			g.example = "missing " + r.ID
		case !h.at.Equal(r.UpdatedAt):
			g.stale++
			g.example = fmt.Sprintf("stale %s: have %s want %s", r.ID, h.at, r.UpdatedAt)
		}
	}
	for id, h := range have {
		if !h.deleted && !live[id] {
			g.notDeleted++
		}
	}
	return g
}

// churn creates, updates and deletes users of customer until stop closes.
func (s *stack) churn(customerID string, every time.Duration, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(1, uint64(len(customerID))))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		truth, err := s.sim.Truth(customerID, "users")
		if err != nil || len(truth) == 0 {
			continue
		}
		pick := truth[rng.IntN(len(truth))].ID
		switch n := rng.IntN(10); {
		case n < 3:
			s.sim.CreateUser(customerID)
		case n < 9:
			_ = s.sim.UpdateUser(customerID, pick)
		default:
			_ = s.sim.DeleteUser(customerID, pick)
		}
	}
}

// TestEndToEnd: two customers, changes and deletes while every service runs;
// the destination converges to the source for every live record; then a
// forced gap (a destination row removed, a message dropped) and the source's
// deletions are found and repaired by a reconciliation run.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addCustomer("acme", 2000, noSettings)
	s.addCustomer("globex", 1200, noSettings)
	s.start("processor", "processor")
	s.start("poller-1", "poller")
	s.start("poller-2", "poller")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go s.churn("acme", 15*time.Millisecond, stop, &wg)
	go s.churn("globex", 25*time.Millisecond, stop, &wg)
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	for _, c := range []string{"acme", "globex"} {
		s.eventually("destination converges for "+c, 90*time.Second, func() (bool, string) {
			g := s.gaps(c)
			return g.zero(false), g.String()
		})
	}

	// Force gaps: remove a destination row, and drop a message before the
	// processor sees it.
	truth, err := s.sim.Truth("acme", "users")
	require.NoError(t, err)
	removed := truth[10].ID
	_, err = s.pool.Exec(s.ctx, `DELETE FROM vomosync.sync_state WHERE customer_id = 'acme' AND resource = 'users' AND record_id = $1`, removed)
	require.NoError(t, err)
	_, err = s.pool.Exec(s.ctx, `DELETE FROM vomo_dest.users WHERE customer_id = 'acme' AND external_id = 'vomo-' || $1`, removed)
	require.NoError(t, err)
	s.stop("processor")
	dropped := truth[20].ID
	require.NoError(t, s.sim.UpdateUser("acme", dropped))
	s.dropNextEventOf("acme", dropped)
	require.Greater(t, s.gaps("acme").missing+s.gaps("acme").stale, 0)
	s.start("processor", "processor")

	// A reconciliation run finds the gaps and the deletions and repairs them.
	s.start("reconciler", "reconciler", "RECONCILER_TICK=200ms")
	_, err = s.pool.Exec(s.ctx, `UPDATE vomosync.schedules SET next_run_at = now() WHERE kind = 'reconcile_full'`)
	require.NoError(t, err)
	for _, c := range []string{"acme", "globex"} {
		s.eventually("reconciled, deletions included, for "+c, 90*time.Second, func() (bool, string) {
			g := s.gaps(c)
			return g.zero(true), g.String()
		})
	}
	// The destination table itself holds exactly the live records.
	for _, c := range []string{"acme", "globex"} {
		truth, err := s.sim.Truth(c, "users")
		require.NoError(t, err)
		var live int
		require.NoError(t, s.pool.QueryRow(s.ctx, `SELECT count(*) FROM vomo_dest.users WHERE customer_id = $1 AND NOT deleted`, c).Scan(&live))
		require.Equal(t, len(truth), live, "destination rows of %s", c)
	}
	var runs int
	require.NoError(t, s.pool.QueryRow(s.ctx, `SELECT count(*) FROM vomosync.recon_runs WHERE customer_id = 'acme' AND kind = 'full'`).Scan(&runs))
	require.Positive(t, runs)
	var found int
	require.NoError(t, s.pool.QueryRow(s.ctx, `SELECT count(*) FROM vomosync.recon_gaps WHERE customer_id = 'acme' AND record_id = ANY($1)`,
		[]string{removed, dropped}).Scan(&found))
	require.Equal(t, 2, found, "both forced gaps recorded")

	s.requireNoSecrets(t, "tok-acme", "tok-globex")

	// Invariant 4: the audit row of a polled record carries the trace id of
	// the poll cycle that published it.
	var auditTrace, cycleTrace string
	err = s.pool.QueryRow(s.ctx, `SELECT a.trace_id, c.trace_id FROM vomosync.audit_log a
		JOIN vomosync.poll_cycles c ON c.id::text = a.cycle_id
		WHERE a.customer_id = 'acme' AND a.origin IN ('poll', 'backfill') LIMIT 1`).Scan(&auditTrace, &cycleTrace)
	require.NoError(t, err)
	require.NotEmpty(t, auditTrace)
	require.Equal(t, cycleTrace, auditTrace)
}

var noSettings = settingsDefaults()

// dropNextEventOf waits until the poller has published the newest version of
// record and deletes it from the stream before any processor reads it.
func (s *stack) dropNextEventOf(customerID, record string) {
	s.t.Helper()
	nc, js, err := messaging.Connect(s.ctx, s.natsURL, "e2e", 5*time.Second)
	require.NoError(s.t, err)
	defer nc.Close()
	st, err := js.Stream(s.ctx, messaging.StreamChanges)
	require.NoError(s.t, err)
	want, err := s.sim.Truth(customerID, "users")
	require.NoError(s.t, err)
	var updated time.Time
	for _, r := range want {
		if r.ID == record {
			updated = r.UpdatedAt
		}
	}
	s.eventually("poller publishes "+record, 30*time.Second, func() (bool, string) {
		msg, err := st.GetLastMsgForSubject(s.ctx, messaging.ChangeSubject(customerID, "users"))
		if err != nil {
			return false, err.Error()
		}
		_ = msg
		cons, err := st.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{messaging.ChangeSubject(customerID, "users")}, DeliverPolicy: jetstream.DeliverAllPolicy})
		if err != nil {
			return false, err.Error()
		}
		batch, err := cons.FetchNoWait(100000)
		if err != nil {
			return false, err.Error()
		}
		for m := range batch.Messages() {
			ev, err := messaging.Decode(m.Data())
			if err != nil || ev.GetRecordId() != record || !ev.GetSourceUpdatedAt().AsTime().Equal(updated) {
				continue
			}
			meta, err := m.Metadata()
			if err != nil {
				return false, err.Error()
			}
			if err := st.DeleteMsg(s.ctx, meta.Sequence.Stream); err != nil {
				return false, err.Error()
			}
			return true, ""
		}
		return false, "not yet published"
	})
}

var _ = pgx.ErrNoRows
