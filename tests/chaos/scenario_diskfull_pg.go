package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vomosync/vomosync/tests/chaos/checker"
	"github.com/vomosync/vomosync/tests/chaos/harness"
)

// The Postgres data directory on a small filesystem that fills up: writes
// fail with disk_full, a WAL write failure PANICs the server, and the
// services retry until space returns and the cluster is started again.

func init() {
	Register(Scenario{
		Name: "disk-full-postgres",
		Description: "the own cluster's data directory on a 256 MiB tmpfs filled to the last byte for 20 s during the workload, then " +
			"freed and the cluster started again if it stopped: nothing lost, nothing acked that was not committed",
		// The outage lasts as long as the disk stays full.
		NoTimeLimit: true,
		MinConverge: 4 * time.Minute,
		Prepare: func(ctx context.Context, p *Prep) (func(), error) {
			p.Options.OwnPostgres = true
			p.Options.ClusterDir = filepath.Join(p.Dir, "pg")
			return mountTmpfs(ctx, filepath.Join(p.Options.ClusterDir, "data"), "256m")
		},
		Faults: fillPostgres,
		Verify: verifyPGFull,
	})
}

type pgFullRecord struct {
	filled     int64
	held       time.Duration
	restarted  bool
	failedMore bool
}

func fillPostgres(ctx context.Context, e *Env) error {
	if err := harness.Wait(ctx, 2*time.Minute, 200*time.Millisecond, "backfill", func(ctx context.Context) (bool, string, error) {
		var behind int
		err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.checkpoints WHERE position <= 'epoch'::timestamptz`).Scan(&behind)
		return behind == 0, "", err
	}); err != nil {
		return nil //nolint:nilerr // the run ended before the backfill did
	}
	rec := &pgFullRecord{}
	e.Set("pgfull", rec)
	bg := context.WithoutCancel(ctx)
	before := scrapeFailures(bg, e)
	filler := filepath.Join(e.Cluster.DataDir, "filler")
	n, err := fill(filler)
	if err != nil {
		return err
	}
	rec.filled = n
	e.Count("PostgreSQL data filesystem filled")
	start := time.Now()
	// Held even when the workload ends first (the runner waits for us).
	time.Sleep(20 * time.Second)
	after := scrapeFailures(bg, e)
	for k, v := range after {
		rec.failedMore = rec.failedMore || v > before[k]
	}
	rec.held = time.Since(start)
	if err := os.Remove(filler); err != nil {
		return err
	}
	// A failed WAL write stops the server; an operator starts it again.
	pctx, cancel := context.WithTimeout(bg, 5*time.Second)
	defer cancel()
	if err := e.Pool.Ping(pctx); err != nil {
		e.Note("PostgreSQL did not answer after space returned (%v): started it again, as an operator would", err)
		sctx, cancel := context.WithTimeout(bg, 2*time.Minute)
		defer cancel()
		if err := e.Cluster.Start(sctx); err != nil {
			return fmt.Errorf("%w\n%s", err, e.Cluster.LogTail())
		}
		rec.restarted = true
		e.Count("PostgreSQL started after space returned")
	}
	return nil
}

func verifyPGFull(_ context.Context, e *Env, _ *checker.Report) ([]string, error) {
	rec, _ := e.Get("pgfull").(*pgFullRecord)
	if rec == nil {
		return []string{"the data directory was never filled (the workload ended before the backfill?)"}, nil
	}
	e.Note("filled %d MiB; held %s; restarted: %v; poller failure metrics moved: %v", rec.filled>>20,
		rec.held.Round(100*time.Millisecond), rec.restarted, rec.failedMore)
	return nil, nil
}
