package reconcile_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/pkg/vomo"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// BenchmarkFullRun compares a whole customer (RECON_BENCH_RECORDS users,
// default 20000; the figure is 1000000) against a destination that
// holds every record, 0.1% of them removed, unthrottled, in report mode. It
// reports the walk alone (the floor: the API walk every full run pays) beside
// the full run, each with wall time, CPU time of this process (which also
// serves the simulator) and the peak Go heap above the baseline.
//
//	RECON_BENCH_RECORDS=1000000 go test -run '^$' -bench FullRun -benchtime 1x -timeout 60m ./reconcile/
func BenchmarkFullRun(b *testing.B) {
	n := 20000
	if v := os.Getenv("RECON_BENCH_RECORDS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err)
	}
	ctx := context.Background()
	db := pgtest.New(b)
	s := sim.New(sim.Options{Seed: 11})
	require.NoError(b, s.AddCustomer(sim.CustomerSpec{ID: custID, Token: "tok", Users: n}))
	srv := httptest.NewServer(s.Handler())
	b.Cleanup(srv.Close)
	kek := sha256.Sum256([]byte("bench"))
	keys, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(kek[:]))
	require.NoError(b, err)
	customers := customer.NewStore(db.Pool, keys)
	require.NoError(b, customers.Add(ctx, customer.New{ID: custID, APIBaseURL: srv.URL + "/v1", Token: "tok",
		Settings: customer.Settings{BudgetPerMinute: -1, Reconcile: customer.Reconcile{GapThreshold: 0.5}}}))
	seedDestination(b, db, s, n)

	client, err := vomo.New(srv.URL+"/v1", "tok")
	require.NoError(b, err)
	rec := &reconcile.Reconciler{DB: db.Pool, Customers: customers, Log: zerolog.Nop()}

	for b.Loop() {
		walked := 0
		walk := measure(func() {
			_, err := client.Walk(ctx, "/users", url.Values{}, func(_ context.Context, p vomo.Page) error {
				walked += len(p.Records)
				return nil
			})
			require.NoError(b, err)
		})
		require.Equal(b, n, walked)
		var res *reconcile.RunResult
		run := measure(func() {
			res, err = rec.Run(ctx, reconcile.Request{Customer: custID, Resource: "users", Full: true, Mode: reconcile.ModeReport})
			require.NoError(b, err)
		})
		require.Equal(b, n, res.SourceRecords)
		require.Equal(b, n/1000, res.Gaps[reconcile.ClassMissing])
		b.ReportMetric(walk.wall.Seconds(), "walk_s")
		b.ReportMetric(walk.cpu.Seconds(), "walk_cpu_s")
		b.ReportMetric(float64(walk.peakHeap)/(1<<20), "walk_heap_MB")
		b.ReportMetric(run.wall.Seconds(), "run_s")
		b.ReportMetric(run.cpu.Seconds(), "run_cpu_s")
		b.ReportMetric(float64(run.peakHeap)/(1<<20), "run_heap_MB")
		b.ReportMetric(float64(n)/run.wall.Seconds(), "records/s")
		b.Logf("%d records: walk alone %.1fs (cpu %.1fs, heap +%.0f MB); full run %.1fs (cpu %.1fs, heap +%.0f MB), %d requests, gaps %v",
			n, walk.wall.Seconds(), walk.cpu.Seconds(), float64(walk.peakHeap)/(1<<20),
			run.wall.Seconds(), run.cpu.Seconds(), float64(run.peakHeap)/(1<<20), res.Requests, res.Gaps)
	}
}

type cost struct {
	wall, cpu time.Duration
	peakHeap  uint64 // above the heap in use at the start
}

// measure runs fn while sampling the Go heap every 10ms.
func measure(fn func()) cost {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > base && m.HeapInuse-base > peak.Load() {
				peak.Store(m.HeapInuse - base)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	cpu0 := cpuTime()
	start := time.Now()
	fn()
	c := cost{wall: time.Since(start), cpu: cpuTime() - cpu0}
	close(stop)
	wg.Wait()
	c.peakHeap = peak.Load()
	return c
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// seedDestination writes sync_state and the destination row for every
// simulated record, as the processor would have, and removes one in a
// thousand; the checkpoint is now.
func seedDestination(b *testing.B, db *pgtest.DB, s *sim.Sim, n int) {
	ctx := context.Background()
	var rows, dest [][]any
	flush := func() {
		_, err := db.Pool.CopyFrom(ctx, pgx.Identifier{"vomosync", "sync_state"},
			[]string{"customer_id", "resource", "record_id", "external_id", "source_updated_at", "record"}, pgx.CopyFromRows(rows))
		require.NoError(b, err)
		_, err = db.Pool.CopyFrom(ctx, pgx.Identifier{"vomo_dest", "users"},
			[]string{"customer_id", "external_id", "source_updated_at", "record"}, pgx.CopyFromRows(dest))
		require.NoError(b, err)
		rows, dest = rows[:0], dest[:0]
	}
	i := 0
	require.NoError(b, s.EachTruth(custID, sim.Users, true, func(r sim.TruthRecord) error {
		i++
		if i%1000 != 0 {
			rows = append(rows, []any{custID, "users", r.ID, "vomo-" + r.ID, r.UpdatedAt, string(r.Fields)})
			dest = append(dest, []any{custID, "vomo-" + r.ID, r.UpdatedAt, string(r.Fields)})
		}
		if len(rows) == 20000 {
			flush()
		}
		return nil
	}))
	flush()
	_, err := db.Pool.Exec(ctx, `UPDATE vomosync.checkpoints SET position = now() + interval '1 minute' WHERE customer_id = $1`, custID)
	require.NoError(b, err)
	_, err = db.Pool.Exec(ctx, `ANALYZE vomosync.sync_state, vomo_dest.users`)
	require.NoError(b, err)
	_ = n
}
