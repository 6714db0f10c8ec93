package e2e

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
)

// checkpointSample is what a checkpoint claimed at one moment: every source
// version at or before it must already be in the stream.
type checkpointSample struct {
	at       time.Time
	position time.Time
	versions []string // id@updated_at of source records at or before position
}

// sampleCheckpoints records checkpoint claims until stop closes.
func (s *stack) sampleCheckpoints(customerID string, stop <-chan struct{}, out *[]checkpointSample, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		case <-time.After(300 * time.Millisecond):
		}
		var pos time.Time
		if err := s.pool.QueryRow(s.ctx, `SELECT position FROM vomosync.checkpoints WHERE customer_id = $1 AND resource = 'users'`, customerID).Scan(&pos); err != nil {
			continue
		}
		truth, err := s.sim.Truth(customerID, "users")
		if err != nil {
			continue
		}
		smp := checkpointSample{at: time.Now(), position: pos}
		for _, r := range truth {
			if !r.UpdatedAt.After(pos) {
				smp.versions = append(smp.versions, r.ID+"@"+r.UpdatedAt.UTC().Format(time.RFC3339))
			}
		}
		*out = append(*out, smp)
	}
}

// streamVersions lists id@updated_at of every change event in the stream.
func (s *stack) streamVersions(customerID string) map[string]bool {
	s.t.Helper()
	nc, js, err := messaging.Connect(s.ctx, s.natsURL, "checker", 5*time.Second)
	require.NoError(s.t, err)
	defer nc.Close()
	st, err := js.Stream(s.ctx, messaging.StreamChanges)
	require.NoError(s.t, err)
	cons, err := st.OrderedConsumer(s.ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{messaging.ChangeSubject(customerID, "users")}})
	require.NoError(s.t, err)
	out := map[string]bool{}
	for {
		batch, err := cons.FetchNoWait(5000)
		require.NoError(s.t, err)
		n := 0
		for m := range batch.Messages() {
			n++
			ev, err := messaging.Decode(m.Data())
			require.NoError(s.t, err)
			out[ev.GetRecordId()+"@"+ev.GetSourceUpdatedAt().AsTime().UTC().Format(time.RFC3339)] = true
		}
		if n == 0 {
			return out
		}
	}
}

// TestChaosKillNine: the processor is killed with SIGKILL every 1-3 s and the
// poller every 2-4 s while the source changes and a one-time action fires for
// every new user. The checker then requires: the checkpoint was never ahead
// of what had been durably published; after a reconciliation the
// destination equals the source, deletions included; every dedup key was
// enqueued once and delivered; every stored event has an audit row.
func TestChaosKillNine(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	var mu sync.Mutex
	delivered := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		delivered[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer hook.Close()
	st := settingsDefaults()
	st.Destination = customer.Destination{AllowPrivate: true}
	st.Actions = []customer.Action{{Name: "welcome", On: "first_seen", Resource: "users", URL: hook.URL}}
	s.addCustomer("acme", 1500, st)
	s.start("processor", "processor")
	s.start("poller", "poller")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var samples []checkpointSample
	wg.Add(3)
	go s.churn("acme", 20*time.Millisecond, stop, &wg)
	go s.sampleCheckpoints("acme", stop, &samples, &wg)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(9, 9))
		nextProc := time.Now().Add(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
		nextPoll := time.Now().Add(time.Duration(2000+rng.IntN(2000)) * time.Millisecond)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(nextProc) {
				s.kill("processor")
				s.start("processor", "processor")
				nextProc = time.Now().Add(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
			}
			if time.Now().After(nextPoll) {
				s.kill("poller")
				s.start("poller", "poller")
				nextPoll = time.Now().Add(time.Duration(2000+rng.IntN(2000)) * time.Millisecond)
			}
		}
	}()
	time.Sleep(12 * time.Second)
	close(stop)
	wg.Wait()

	// The checkpoint was never ahead of what had been handed to JetStream.
	stream := s.streamVersions("acme")
	require.NotEmpty(t, samples)
	for _, smp := range samples {
		for _, v := range smp.versions {
			require.True(t, stream[v], "checkpoint %s (sampled %s) was ahead of %s, which was never published",
				smp.position, smp.at.Format(time.RFC3339Nano), v)
		}
	}

	// Converge, then reconcile deletions.
	s.eventually("destination converges", 90*time.Second, func() (bool, string) {
		g := s.gaps("acme")
		return g.zero(false), g.String()
	})
	s.start("reconciler", "reconciler", "RECONCILER_TICK=200ms")
	_, err := s.pool.Exec(s.ctx, `UPDATE vomosync.schedules SET next_run_at = now() WHERE kind = 'reconcile_full'`)
	require.NoError(t, err)
	s.eventually("reconciled, deletions included", 90*time.Second, func() (bool, string) {
		g := s.gaps("acme")
		return g.zero(true), g.String()
	})

	// Every dedup key enqueued once (the unique index makes a second row
	// impossible; every record first seen has exactly one) and delivered.
	var seen, outbox int
	require.NoError(t, s.pool.QueryRow(s.ctx, `SELECT count(*) FROM vomosync.sync_state WHERE customer_id = 'acme' AND resource = 'users'`).Scan(&seen))
	require.NoError(t, s.pool.QueryRow(s.ctx, `SELECT count(*) FROM vomosync.outbox WHERE customer_id = 'acme'`).Scan(&outbox))
	require.Equal(t, seen, outbox, "one outbox row per record ever seen")
	s.eventually("every side effect delivered", 60*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == outbox, ""
	})

	// Every event in the stream was processed at least once (audit complete).
	var unaudited int
	versions := make([]string, 0, len(stream))
	for v := range stream {
		versions = append(versions, v)
	}
	require.NoError(t, s.pool.QueryRow(context.Background(), `
		SELECT count(*) FROM unnest($1::text[]) v
		WHERE NOT EXISTS (SELECT 1 FROM vomosync.audit_log a WHERE a.customer_id = 'acme' AND a.resource = 'users'
			AND a.record_id || '@' || to_char(a.record_updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') = v)`,
		versions).Scan(&unaudited))
	require.Zero(t, unaudited, "events with no audit row")
}
