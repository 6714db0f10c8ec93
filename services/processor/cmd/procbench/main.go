// Command procbench measures the processor on this machine: stream ->
// committed destination + audit rows, against a per-message baseline, with
// a CPU profile. `make bench` runs the smaller BenchmarkProcessor instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/services/processor/internal/bench"
)

func main() {
	if bench.ServeNATSIfChild() {
		return
	}
	o := bench.Options{Progress: os.Stderr}
	flag.IntVar(&o.N, "n", 1_000_000, "events through the processor")
	flag.IntVar(&o.Baseline, "baseline", 20_000, "events through the per-message baseline")
	flag.IntVar(&o.Workers, "workers", 2, "processor workers")
	flag.IntVar(&o.BatchSize, "batch", 500, "processor batch size")
	flag.StringVar(&o.AdminURL, "pg", pgtest.AdminURL(), "PostgreSQL server to create the scratch database on")
	flag.StringVar(&o.CPUProfile, "cpuprofile", "procbench.cpu.pprof", "CPU profile of the processor phase (empty: none)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "procbench:", err)
		os.Exit(1)
	}
	fmt.Println(rep)
	if o.CPUProfile != "" {
		fmt.Printf("  CPU profile: go tool pprof -top %s\n", o.CPUProfile)
	}
}
