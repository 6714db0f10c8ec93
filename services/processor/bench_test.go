package processor_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/services/processor/internal/bench"
)

// BenchmarkProcessor drains a stream of realistic user events into the
// Postgres destination with audit rows and compares with a per-message
// baseline. PROCBENCH_N (default 200000) and PROCBENCH_BASELINE (5000) size
// it; `go run ./cmd/procbench` runs the full 1,000,000 with a CPU profile.
func BenchmarkProcessor(b *testing.B) {
	n, base := envInt("PROCBENCH_N", 200_000), envInt("PROCBENCH_BASELINE", 5_000)
	for range b.N {
		rep, err := bench.Run(context.Background(), bench.Options{N: n, Baseline: base, Workers: 2, BatchSize: 500, AdminURL: pgtest.AdminURL()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(rep.Rate, "events/s")
		b.ReportMetric(rep.BaselineRate, "baseline_events/s")
		b.ReportMetric(rep.Ratio, "x_baseline")
		b.ReportMetric(float64(rep.PeakHeapBytes>>20), "peak_heap_MiB")
		b.Log("\n" + rep.String())
	}
}

// TestMain lets the benchmark start this test binary as its JetStream
// server (a separate process, as in production).
func TestMain(m *testing.M) {
	if bench.ServeNATSIfChild() {
		return
	}
	os.Exit(m.Run())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
