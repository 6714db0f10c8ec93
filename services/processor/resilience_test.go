package processor_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/services/processor"
	"github.com/vomosync/vomosync/services/processor/deadletter"
	"github.com/vomosync/vomosync/services/processor/destination"
)

// Two replicas share the consumer and get interleaved, out-of-order versions
// of the same records: the destination ends at the newest of each.
func TestTwoReplicasOutOfOrderNewestWins(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addCustomer("acme", customer.Settings{})
	const records, versions = 60, 8
	var evs []ev
	for v := 1; v <= versions; v++ {
		for r := 1; r <= records; r++ {
			evs = append(evs, user("acme", strconv.Itoa(r), t0.Add(time.Duration(v)*time.Minute), "first_name", "v"+strconv.Itoa(v)))
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	rnd.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	cfg := testConfig()
	cfg.BatchSize = 25 // many small batches so the replicas really interleave
	r1 := b.start(cfg, processor.Hooks{})
	r2 := b.start(cfg, processor.Hooks{})
	for i := 0; i < len(evs); i += 40 {
		b.publish(evs[i:min(i+40, len(evs))]...)
	}
	// A message redelivered after its ack wait (a loaded machine) is
	// audited again, as skipped_stale: wait for every event and an idle
	// consumer rather than for an exact count.
	b.eventually("every event audited", func() bool {
		return b.count(`SELECT count(DISTINCT (record_id, record_updated_at)) FROM vomosync.audit_log`) == len(evs) &&
			b.consumerIdle()
	})

	newest := t0.Add(versions * time.Minute)
	require.Equal(t, records, b.count(`SELECT count(*) FROM vomo_dest.users WHERE source_updated_at = $1 AND first_name = $2`, newest, "v"+strconv.Itoa(versions)))
	require.Equal(t, records, b.count(`SELECT count(*) FROM vomosync.sync_state WHERE source_updated_at = $1 AND record->>'first_name' = $2`, newest, "v"+strconv.Itoa(versions)))
	// Each record applied at least once, never the same version twice.
	require.Equal(t, 0, b.count(`SELECT count(*) FROM (SELECT record_id, record_updated_at FROM vomosync.audit_log
		WHERE outcome = 'applied' GROUP BY 1, 2 HAVING count(*) > 1) d`))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome IN ('failed', 'dead_lettered')`))
	require.Zero(t, r1.p.Applier().Stats().TxRetries.Load()+r2.p.Applier().Stats().TxRetries.Load(),
		"state locks are taken in key order before destination locks: no deadlock to retry")
}

// hookSink receives one-time actions and counts deliveries per dedup key.
type hookSink struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys map[string]int
}

func newHookSink(t *testing.T) *hookSink {
	s := &hookSink{keys: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p map[string]any
		if json.Unmarshal(body, &p) != nil || p["dedup_key"] != r.Header.Get(destination.HeaderIdempotencyKey) {
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.keys[r.Header.Get(destination.HeaderIdempotencyKey)]++
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *hookSink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// The processor dies between commit and ack, again and again, while a
// first-seen action is configured: every dedup key is enqueued once, and the
// destination ends equal to the newest version of every record.
func TestCrashBetweenCommitAndAck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sink := newHookSink(t)
	b.addCustomer("acme", customer.Settings{
		Destination: customer.Destination{AllowPrivate: true},
		Actions:     []customer.Action{{Name: "welcome", On: "first_seen", Resource: "users", URL: sink.srv.URL}},
	})
	const records = 120
	var evs []ev
	for v := 1; v <= 3; v++ {
		for r := 1; r <= records; r++ {
			evs = append(evs, user("acme", strconv.Itoa(r), t0.Add(time.Duration(v)*time.Hour), "first_name", "v"+strconv.Itoa(v)))
		}
	}
	for i := 0; i < len(evs); i += 30 {
		b.publish(evs[i:min(i+30, len(evs))]...)
	}
	cfg := testConfig()
	cfg.BatchSize = 30
	cfg.Workers = 1
	var commits atomic.Int64
	crash := processor.Hooks{AfterCommit: func(context.Context, int) error {
		if commits.Add(1)%3 == 0 {
			return errors.New("killed after commit, before ack")
		}
		return nil
	}}
	var conflicts, crashes int64
	for round := 0; ; round++ {
		require.Less(t, round, 60, "processor never finished")
		r := b.start(cfg, crash)
		select {
		case <-r.done:
		case <-time.After(3 * time.Second):
			// No crash for a while: it caught up.
		}
		err := r.stop()
		conflicts += r.p.Applier().Stats().OutboxConflicts.Load()
		if err != nil {
			crashes++
			continue
		}
		if b.count(`SELECT count(*) FROM vomosync.sync_state WHERE source_updated_at = $1`, t0.Add(3*time.Hour)) == records {
			break
		}
	}
	require.Positive(t, crashes)
	require.Zero(t, conflicts, "no dedup key was enqueued a second time")
	require.Equal(t, records, b.count(`SELECT count(*) FROM vomosync.outbox`))
	require.Equal(t, records, b.count(`SELECT count(DISTINCT dedup_key) FROM vomosync.outbox`))
	require.Equal(t, records, b.count(`SELECT count(*) FROM vomo_dest.users WHERE first_name = 'v3' AND source_updated_at = $1`, t0.Add(3*time.Hour)))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM (SELECT record_id, record_updated_at FROM vomosync.audit_log
		WHERE outcome = 'applied' GROUP BY 1, 2 HAVING count(*) > 1) d`), "a version is applied once however often it is delivered")

	r := b.start(cfg, processor.Hooks{})
	b.eventually("welcome actions delivered", func() bool {
		return sink.distinct() == records && b.count(`SELECT count(*) FROM vomosync.outbox WHERE status = 'delivered'`) == records
	})
	_ = r
}

// One customer's destination is down for a while, another's rejects one
// record, a third never comes back: the healthy customer flows throughout,
// the flaky one is applied after recovery, the rejected record and the dead
// destination's records are dead-lettered with their reasons.
func TestDestinationFailuresAreIsolated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var flakyDown atomic.Bool
	flakyDown.Store(true)
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if flakyDown.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		}
	}))
	defer flaky.Close()
	picky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if json.Valid(body) && containsExternal(body, "vomo-13") {
			http.Error(w, `{"error":"email domain not allowed"}`, http.StatusUnprocessableEntity)
		}
	}))
	defer picky.Close()
	var deadBack atomic.Bool
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !deadBack.Load() {
			http.Error(w, "gone fishing", http.StatusBadGateway)
		}
	}))
	defer dead.Close()
	httpDest := func(url string) customer.Settings {
		return customer.Settings{Destination: customer.Destination{Kind: "http", URL: url, AllowPrivate: true}}
	}
	b.addCustomer("healthy", customer.Settings{})
	b.addCustomer("flaky", httpDest(flaky.URL))
	b.addCustomer("picky", httpDest(picky.URL))
	b.addCustomer("dead", httpDest(dead.URL))
	var evs []ev
	for i := 1; i <= 20; i++ {
		id := strconv.Itoa(i)
		evs = append(evs, user("healthy", id, t0), user("flaky", id, t0), user("picky", id, t0), user("dead", id, t0))
	}
	b.publish(evs...)
	cfg := testConfig()
	cfg.MaxDeliver = 4
	cfg.RetryBase = 100 * time.Millisecond
	cfg.RetryMax = 300 * time.Millisecond
	// Attempts are counted exactly below: on a loaded machine a batch
	// waiting on three HTTP destinations can outlast a 1 s ack wait, and the
	// redelivery that follows would count as an attempt.
	cfg.AckWait = 10 * time.Second
	b.start(cfg, processor.Hooks{})

	b.eventually("healthy flows while others fail", func() bool {
		return b.count(`SELECT count(*) FROM vomosync.audit_log WHERE customer_id = 'healthy' AND outcome = 'applied'`) == 20 &&
			b.count(`SELECT count(*) FROM vomosync.audit_log WHERE customer_id = 'flaky' AND outcome = 'failed'`) >= 20
	})
	flakyDown.Store(false)
	b.eventually("all settled", func() bool {
		return b.count(`SELECT count(*) FROM vomosync.sync_state WHERE customer_id = 'flaky'`) == 20 &&
			b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE customer_id = 'dead'`) == 20 &&
			b.count(`SELECT count(*) FROM vomosync.sync_state WHERE customer_id = 'picky'`) == 19
	})
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE customer_id = 'picky' AND record_id = '13'
		AND error_class = 'destination_rejected' AND error LIKE '%422%email domain not allowed%'`))
	require.Equal(t, 20, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE customer_id = 'dead'
		AND error_class = 'retries_exhausted' AND attempts = 4 AND error LIKE '%502%' AND first_failed_at < last_failed_at`))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE customer_id IN ('healthy', 'flaky')`))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM vomosync.sync_state WHERE customer_id = 'dead'`), "nothing believed delivered")
	require.Equal(t, 20, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE customer_id = 'dead' AND outcome = 'dead_lettered'`))

	// The cause clears; the reconciler re-drives the dead letters.
	deadBack.Store(true)
	store := &deadletter.Store{DB: b.db.Pool, JS: b.js}
	open, err := store.List(b.ctx, deadletter.Filter{CustomerID: "dead"})
	require.NoError(t, err)
	require.Len(t, open, 20)
	for _, l := range open {
		require.NoError(t, store.Redrive(b.ctx, l.ID, "destination healthy again"))
	}
	require.ErrorIs(t, store.Redrive(b.ctx, open[0].ID, "twice"), deadletter.ErrResolved)
	b.eventually("re-driven records applied", func() bool {
		return b.count(`SELECT count(*) FROM vomosync.sync_state WHERE customer_id = 'dead'`) == 20
	})
	require.Equal(t, 20, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE customer_id = 'dead' AND outcome = 'applied' AND origin = 'redrive'`))
	require.Equal(t, 20, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE customer_id = 'dead' AND status = 'redriven' AND resolved_by = 'reconciler'`))
}

func containsExternal(body []byte, ext string) bool {
	var batch struct {
		Operations []struct {
			ExternalID string `json:"external_id"`
		} `json:"operations"`
	}
	_ = json.Unmarshal(body, &batch)
	for _, op := range batch.Operations {
		if op.ExternalID == ext {
			return true
		}
	}
	return false
}
