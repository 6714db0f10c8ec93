package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/services/vomosim/sim"
	"github.com/vomosync/vomosync/tests/chaos/checker"
	"github.com/vomosync/vomosync/tests/chaos/harness"
)

// Small filesystems that fill up: the JetStream store lives on its own
// tmpfs; once the backfill is done a filler file takes every free byte
// while the workload goes on, then space returns.

func init() {
	Register(Scenario{
		Name: "disk-full-nats",
		Description: "the JetStream store on a 64 MiB tmpfs filled to the last byte for 35 s (longer than the poller's 30 s flush timeout) during the workload, then freed: " +
			"nothing acked that was not stored, checkpoints frozen meanwhile, a failure metric moves, nothing lost afterwards",
		MinConverge: 6 * time.Minute,
		// The outage lasts as long as the disk stays full (and, after a
		// write error, until nats-server restarts: runbook
		// VomosyncPublishFailing), so the 2x time rule does not apply.
		NoTimeLimit: true,
		Prepare: func(ctx context.Context, p *Prep) (func(), error) {
			mnt := filepath.Join(p.Dir, "natsfs")
			cleanup, err := mountTmpfs(ctx, mnt, "64m")
			if err != nil {
				return nil, err
			}
			p.Options.NATSStoreDir = filepath.Join(mnt, "store")
			return cleanup, nil
		},
		Faults: fillNATS,
		Verify: verifyFull,
	})
}

// mountTmpfs mounts a tmpfs of size at dir; ErrSkip when mounting is not
// allowed here (not root, no CAP_SYS_ADMIN, a container without mounts).
func mountTmpfs(ctx context.Context, dir, size string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0711", "tmpfs", dir).CombinedOutput() // #nosec G204 -- fixed command, harness paths
	if err != nil {
		return nil, fmt.Errorf("%w: mount -t tmpfs refused (%v: %s); this scenario needs root or CAP_SYS_ADMIN", ErrSkip, err, strings.TrimSpace(string(out)))
	}
	return func() {
		_ = exec.Command("umount", "-l", dir).Run() // #nosec G204 -- fixed command
	}, nil
}

// fill writes a file until the filesystem refuses (ENOSPC).
func fill(path string) (int64, error) {
	f, err := os.Create(path) // #nosec G304 -- harness path
	if err != nil {
		return 0, err
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	var n int64
	for {
		w, err := f.Write(chunk)
		n += int64(w)
		if err != nil {
			return n, nil //nolint:nilerr // the filesystem is full: that is the point
		}
	}
}

type fullRecord struct {
	before, during  map[string]time.Time
	sourceChanged   bool
	failures        map[string][2]float64 // metric → before, after
	jetstreamOff    bool
	filledBytes     int64
	heldFor         time.Duration
	alertRuleExists bool
}

func positions(ctx context.Context, e *Env) (map[string]time.Time, error) {
	rows, err := e.Pool.Query(ctx, `SELECT customer_id, position FROM vomosync.checkpoints WHERE resource = 'users'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var c string
		var p time.Time
		if err := rows.Scan(&c, &p); err != nil {
			return nil, err
		}
		out[c] = p
	}
	return out, rows.Err()
}

var failureMetrics = []struct{ name, match string }{
	{"vomosync_publish_failures_total", ""},
	{"vomosync_poll_cycles_total", `outcome="failed"`},
}

func scrapeFailures(ctx context.Context, e *Env) map[string]float64 {
	out := map[string]float64{}
	for _, m := range failureMetrics {
		var match []string
		if m.match != "" {
			match = []string{m.match}
		}
		if v, found, err := e.Service("poller").ScrapeSum(ctx, m.name, match...); err == nil && found {
			out[m.name+m.match] = v
		}
	}
	return out
}

func fillNATS(ctx context.Context, e *Env) error {
	mnt := filepath.Dir(e.NATS.StoreDir)
	// The backfill first: the fault hits the incremental polling.
	if err := harness.Wait(ctx, 2*time.Minute, 200*time.Millisecond, "backfill", func(ctx context.Context) (bool, string, error) {
		var behind int
		err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.checkpoints WHERE position <= 'epoch'::timestamptz`).Scan(&behind)
		return behind == 0, "", err
	}); err != nil {
		return nil //nolint:nilerr // the run ended before the backfill did
	}
	time.Sleep(500 * time.Millisecond)
	rec := &fullRecord{failures: map[string][2]float64{}}
	e.Set("full", rec)
	before := scrapeFailures(ctx, e)
	filler := filepath.Join(mnt, "filler")
	n, err := fill(filler)
	if err != nil {
		return err
	}
	rec.filledBytes = n
	e.Count("JetStream store filesystem filled")
	start := time.Now()
	// In-flight publishes may still land; after a second nothing can.
	time.Sleep(time.Second)
	bg := context.WithoutCancel(ctx)
	if rec.before, err = positions(bg, e); err != nil {
		return err
	}
	sum0 := truthSum(e)
	// Held past the poller's 30 s flush timeout even when the workload ends
	// first (the runner waits for this function before converging).
	time.Sleep(35 * time.Second)
	if rec.during, err = positions(bg, e); err != nil {
		return err
	}
	rec.sourceChanged = truthSum(e) != sum0
	after := scrapeFailures(bg, e)
	for k, v := range after {
		rec.failures[k] = [2]float64{before[k], v}
	}
	rec.heldFor = time.Since(start)
	if err := os.Remove(filler); err != nil {
		return err
	}
	// Does the stream take writes again? Probe it with a message the
	// processor dead-letters (no such customer) instead of waiting on the
	// poller, whose blocked cycle waits out its own flush timeout.
	time.Sleep(time.Second)
	if err := probeStream(bg, e); err != nil {
		rec.jetstreamOff = true
		e.Note("the change stream took no writes after space returned (%v): restarted nats-server, as an operator would", err)
		e.NATS.Kill()
		e.Count("nats-server restarted after space returned")
		sctx, cancel := context.WithTimeout(bg, time.Minute)
		defer cancel()
		if err := e.NATS.Start(sctx); err != nil {
			return err
		}
		if err := probeStream(bg, e); err != nil {
			e.Note("the change stream still takes no writes after the restart: %v", err)
		}
	}
	return nil
}

func probeStream(ctx context.Context, e *Env) error {
	nc, js, err := e.Connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = js.Publish(pctx, messaging.ChangeSubject("chaos-probe", "users"), []byte("probe"))
	return err
}

// truthSum fingerprints the source: it changes when any record does.
func truthSum(e *Env) int64 {
	var s int64
	for _, c := range e.CustomerIDs() {
		_ = e.Sim.EachTruth(c, "users", false, func(r sim.TruthRecord) error {
			s += r.UpdatedAt.Unix() ^ int64(len(r.ID))
			return nil
		})
	}
	return s
}

func verifyFull(_ context.Context, e *Env, _ *checker.Report) ([]string, error) {
	rec, _ := e.Get("full").(*fullRecord)
	if rec == nil {
		return []string{"the store was never filled (the workload ended before the backfill?)"}, nil
	}
	var v []string
	e.Note("filled %d MiB; held %s; source changed meanwhile: %v", rec.filledBytes>>20, rec.heldFor.Round(100*time.Millisecond), rec.sourceChanged)
	for c, p := range rec.before {
		if !rec.during[c].Equal(p) {
			v = append(v, fmt.Sprintf("checkpoint of %s moved from %s to %s while the store was full", c, p.Format(time.RFC3339), rec.during[c].Format(time.RFC3339)))
		}
	}
	moved := false
	for k, ba := range rec.failures {
		e.Note("poller metric %s: %g → %g", k, ba[0], ba[1])
		moved = moved || ba[1] > ba[0]
	}
	if !moved {
		v = append(v, "no poller failure metric moved while the store was full (nothing for an alert to fire on)")
	}
	rules, err := alertRulesMention("vomosync_publish_failures_total")
	switch {
	case err != nil:
		e.Note("alert rules not read: %v", err)
	case !rules:
		v = append(v, "no alert rule in deployments/prometheus/rules uses vomosync_publish_failures_total")
	default:
		e.Note("an alert rule uses vomosync_publish_failures_total")
	}
	return v, nil
}

func alertRulesMention(metric string) (bool, error) {
	dir := filepath.Join(harness.RepoRoot(), "deployments", "prometheus", "rules")
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		return false, err
	}
	if len(files) == 0 {
		return false, errors.New("no rule files in " + dir)
	}
	for _, f := range files {
		b, err := os.ReadFile(f) // #nosec G304 -- repository files
		if err != nil {
			return false, err
		}
		if strings.Contains(string(b), metric) {
			return true, nil
		}
	}
	return false, nil
}
