package chaos

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/tests/chaos/checker"
	"github.com/vomosync/vomosync/tests/chaos/harness"
)

// BaselineName is the fault-free scenario every run measures first.
const BaselineName = "baseline"

// Profile sizes a run.
type Profile struct {
	Name     string
	Workload harness.Workload
	// ConvergeTimeout bounds each wait for convergence.
	ConvergeTimeout time.Duration
	// SampleEvery is the checkpoint sampling interval.
	SampleEvery time.Duration
	// ActionsAfterBackfill configures the first_seen action only once the
	// initial backfill is done, so only records first seen under the
	// workload have a side effect (200,000 welcome requests would make the
	// outbox the whole run).
	ActionsAfterBackfill bool
}

// Profiles by name. The long one is the workload; the short one is
// scaled so that every short scenario together stays within about six
// minutes on the 2-core machine.
var Profiles = map[string]Profile{
	"short": {Name: "short", ConvergeTimeout: 2 * time.Minute, SampleEvery: 250 * time.Millisecond,
		Workload: harness.Workload{Customers: 2, Users: 1000, UpdateFrac: 0.10, DeleteFrac: 0.01, CreateFrac: 0.01, Duration: 6 * time.Second}},
	"long": {Name: "long", ConvergeTimeout: 15 * time.Minute, SampleEvery: time.Second, ActionsAfterBackfill: true,
		Workload: harness.Workload{Customers: 4, Users: 50000, UpdateFrac: 0.10, DeleteFrac: 0.01, CreateFrac: 0.01, Duration: 2 * time.Minute}},
}

// Runner runs scenarios of one profile.
type Runner struct {
	Profile Profile
	Seed    int64
	Bin     *harness.Binaries
	// WorkDir holds each scenario's scratch directory (default os.TempDir()).
	WorkDir string
	// Keep leaves scratch directories (logs, stores) in place.
	Keep bool
	// Out receives progress lines and the tables.
	Out io.Writer

	mu       sync.Mutex
	baseline time.Duration
}

// Result is one scenario's outcome.
type Result struct {
	Scenario   Scenario
	Workload   harness.Workload
	Report     checker.Report
	Faults     string
	Deaths     string
	Duration   time.Duration // workload start → converged, deletions reconciled
	Baseline   time.Duration
	Violations []string
	Notes      []string
	Skipped    string
	Err        error
}

// Failed reports whether the result fails the run (known failures do not).
func (r Result) Failed() bool {
	if r.Skipped != "" || r.Scenario.KnownFailure != "" {
		return false
	}
	return r.Err != nil || len(r.Violations) > 0
}

func (r *Runner) logf(format string, args ...any) {
	if r.Out != nil {
		fmt.Fprintf(r.Out, "  · "+format+"\n", args...)
	}
}

// timeSlack is the least time a faulted run may take beyond the baseline.
const timeSlack = 15 * time.Second

// RunAll runs the baseline (always, for the time comparison) and then the
// scenarios, printing each table as it finishes. It returns every result.
func (r *Runner) RunAll(ctx context.Context, list []Scenario) []Result {
	if len(list) == 0 || list[0].Name != BaselineName {
		if b, ok := Lookup(BaselineName); ok {
			list = append([]Scenario{b}, list...)
		}
	}
	var out []Result
	for _, s := range list {
		if ctx.Err() != nil {
			break
		}
		res := r.Run(ctx, s)
		if s.Name == BaselineName && res.Err == nil && len(res.Violations) == 0 {
			r.mu.Lock()
			r.baseline = res.Duration
			r.mu.Unlock()
		}
		PrintResult(r.Out, res)
		out = append(out, res)
	}
	return out
}

func seedFor(seed int64, name string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return uint64(seed) ^ h.Sum64()
}

// Run runs one scenario on a fresh stack.
func (r *Runner) Run(ctx context.Context, s Scenario) (res Result) {
	res = Result{Scenario: s, Workload: r.Profile.Workload}
	if s.Workload != nil {
		s.Workload(&res.Workload)
	}
	r.mu.Lock()
	res.Baseline = r.baseline
	r.mu.Unlock()
	if r.Out != nil {
		fmt.Fprintf(r.Out, "\n== %s: %s\n", s.Name, s.Description)
	}
	dir, err := os.MkdirTemp(r.WorkDir, "chaos-"+s.Name+"-")
	if err != nil {
		res.Err = err
		return res
	}
	// Traversable (not readable) by others: an own PostgreSQL cluster
	// below it runs as the postgres user.
	if err := os.Chmod(dir, 0o711); err != nil { // #nosec G302 -- directories need x to be traversed
		res.Err = err
		return res
	}
	defer func() {
		if r.Keep || res.Failed() {
			r.logf("scratch directory kept: %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	prep := &Prep{Dir: dir, Profile: r.Profile, ServiceEnv: map[string][]string{}, Skip: map[string]bool{},
		Options: &harness.Options{Bin: r.Bin, Dir: dir, SimSeed: r.Seed, Logf: r.logf}}
	if s.Prepare != nil {
		cleanup, err := s.Prepare(ctx, prep)
		if cleanup != nil {
			defer cleanup()
		}
		if errors.Is(err, ErrSkip) {
			res.Skipped = err.Error()
			return res
		}
		if err != nil {
			res.Err = fmt.Errorf("prepare: %w", err)
			return res
		}
	}
	st, err := harness.New(ctx, *prep.Options)
	if err != nil {
		res.Err = err
		return res
	}
	env := &Env{Stack: st, Profile: r.Profile, Workload: res.Workload,
		Rand:   rand.New(rand.NewPCG(seedFor(r.Seed, s.Name), uint64(r.Seed))),
		counts: map[string]int{}, exempt: map[checker.Version]bool{}, skip: prep.Skip, values: map[string]any{}}
	defer func() {
		res.Faults = env.faultSummary()
		res.Notes = append(res.Notes, env.notes...)
		if res.Err != nil || res.Failed() {
			for _, name := range []string{"poller", "processor", "reconciler"} {
				if svc := st.Service(name); svc != nil {
					res.Notes = append(res.Notes, "--- "+name+" log tail:\n      "+strings.Join(svc.Tail(15), "\n      "))
				}
			}
		}
		st.Close()
	}()
	if err := r.drive(ctx, s, prep, env, &res); err != nil {
		res.Err = errors.Join(res.Err, err)
	}
	return res
}

// drive is the body of a run: customers, services, workload and faults,
// convergence, reconciliation, check.
func (r *Runner) drive(ctx context.Context, s Scenario, prep *Prep, e *Env, res *Result) error {
	w := res.Workload
	settings := e.FastSettings()
	if s.Settings != nil {
		s.Settings(&settings)
	}
	initial := settings
	if r.Profile.ActionsAfterBackfill {
		initial.Actions = nil
	}
	for i := 1; i <= w.Customers; i++ {
		if err := e.AddCustomer(ctx, fmt.Sprintf("c%d", i), w.Users, initial); err != nil {
			return err
		}
	}
	for _, name := range []string{"processor", "poller"} {
		if _, err := e.Stack.Start(name, name, prep.ServiceEnv[name]...); err != nil {
			return err
		}
	}
	e.Sampler = harness.NewSampler(e.Stack, r.Profile.SampleEvery)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() { defer sampling.Done(); e.Sampler.Run(sampleCtx) }()

	e.Began = time.Now()
	faultCtx, stopFaults := context.WithCancel(ctx)
	defer stopFaults()
	faultErr := make(chan error, 1)
	go func() {
		if s.Faults == nil {
			faultErr <- nil
			return
		}
		faultErr <- s.Faults(faultCtx, e)
	}()
	// Phase 1, the initial backfill under faults: the churn waits for it,
	// because a full walk that sees deletions is untrusted and walked
	// again, so a steady delete rate would hold every checkpoint at epoch.
	timeout := max(r.Profile.ConvergeTimeout, s.MinConverge)
	if s.KnownFailure != "" {
		// Expected not to converge: do not spend the whole timeout on it.
		timeout = min(timeout, 30*time.Second)
	}
	err := harness.Wait(ctx, timeout, 250*time.Millisecond, "initial backfill (every checkpoint past epoch)",
		func(ctx context.Context) (bool, string, error) {
			if err := e.CrashLooping(); err != nil {
				return false, "", harness.Permanent(err)
			}
			var behind int
			err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.checkpoints WHERE position <= 'epoch'::timestamptz`).Scan(&behind)
			return behind == 0, fmt.Sprintf("%d checkpoints at epoch", behind), err
		})
	if err != nil {
		// Still check, so the table shows what the stuck backfill left.
		stopFaults()
		<-faultErr
		stopSampling()
		sampling.Wait()
		res.Err = err
		r.logf("backfill did not finish; checking anyway")
		return r.check(ctx, s, e, checker.Input{Customers: e.CustomerIDs(), Source: e.Sim, Pool: e.Pool, Skip: e.skip}, res)
	}
	r.logf("backfilled after %s", time.Since(e.Began).Round(100*time.Millisecond))
	if r.Profile.ActionsAfterBackfill {
		for _, c := range e.CustomerIDs() {
			if err := e.Customers.SetSettings(ctx, c, []string{customer.Users}, settings); err != nil {
				return fmt.Errorf("configure actions: %w", err)
			}
		}
		// The processor caches settings for PROCESSOR_SETTINGS_TTL (1s here).
		e.effectsSince = time.Now().Add(3 * time.Second)
	}
	// Phase 2, the workload changes the source under faults.
	var churn sync.WaitGroup
	var churnMu sync.Mutex
	var total harness.ChurnStats
	for i, c := range e.CustomerIDs() {
		churn.Add(1)
		go func() {
			defer churn.Done()
			cs, err := harness.Churn(ctx, e.Sim, c, w, uint64(r.Seed)+uint64(i))
			if err != nil {
				e.Note("churn %s: %v", c, err)
			}
			churnMu.Lock()
			total.Updates += cs.Updates
			total.Deletes += cs.Deletes
			total.Creates += cs.Creates
			churnMu.Unlock()
		}()
	}
	churn.Wait()
	stopFaults()
	if err := <-faultErr; err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	r.logf("workload done in %s (%d updates, %d deletes, %d creates); waiting to converge", time.Since(e.Began).Round(100*time.Millisecond), total.Updates, total.Deletes, total.Creates)
	in := checker.Input{Customers: e.CustomerIDs(), Source: e.Sim, Pool: e.Pool, Skip: e.skip}
	// Polling alone may never close every gap (a message the broker gave
	// up on after its delivery limit, under a long run of kills): when the
	// difference stops shrinking for 30 s, the reconciliation takes over.
	best, bestAt := -1, time.Now()
	err = harness.Wait(ctx, timeout, 500*time.Millisecond, "destination matches the source (before reconciliation)",
		func(ctx context.Context) (bool, string, error) {
			if err := e.CrashLooping(); err != nil {
				return false, "", harness.Permanent(err)
			}
			quick := in
			quick.VersionsOnly = true
			rep, err := checker.Diff(ctx, quick)
			if err != nil {
				return false, "", err
			}
			n := rep.Counts[checker.Lost] + rep.Counts[checker.Stale]
			if best < 0 || n < best {
				best, bestAt = n, time.Now()
			}
			if n > 0 && time.Since(bestAt) > 30*time.Second {
				e.Note("polling left %d records lost or stale (no progress for 30 s); reconciliation repairs them", n)
				return true, "", nil
			}
			return n == 0, countsLine(rep), nil
		})
	if err == nil {
		r.logf("converged after %s", time.Since(e.Began).Round(100*time.Millisecond))
		if s.AfterConverge != nil {
			if err := s.AfterConverge(ctx, e); err != nil {
				return fmt.Errorf("after converge: %w", err)
			}
		}
		err = r.reconcile(ctx, e, in, prep.ServiceEnv["reconciler"], timeout)
	}
	res.Duration = time.Since(e.Began)
	stopSampling()
	sampling.Wait()
	if err != nil {
		// Still check, so the table shows what did not converge.
		res.Err = err
		res.Duration = 0
		r.logf("did not converge; checking anyway")
	} else {
		r.logf("reconciled after %s; checking", res.Duration.Round(100*time.Millisecond))
	}
	return r.check(ctx, s, e, in, res)
}

// reconcile runs a full reconciliation of every customer (starting the
// reconciler if the scenario did not) and waits until the destination
// equals the source, deletions included, and every side effect was sent.
func (r *Runner) reconcile(ctx context.Context, e *Env, in checker.Input, env []string, timeout time.Duration) error {
	if e.Service("reconciler") == nil {
		if _, err := e.Stack.Start("reconciler", "reconciler", env...); err != nil {
			return err
		}
	}
	trigger := func() error {
		_, err := e.Pool.Exec(ctx, `UPDATE vomosync.schedules SET next_run_at = now() WHERE kind = 'reconcile_full'`)
		return err
	}
	since := time.Now().Add(-time.Second)
	if err := trigger(); err != nil {
		return fmt.Errorf("trigger reconciliation: %w", err)
	}
	lastTrigger := time.Now()
	return harness.Wait(ctx, timeout, 500*time.Millisecond, "reconciled: destination equals source, deletions included",
		func(ctx context.Context) (bool, string, error) {
			if err := e.CrashLooping(); err != nil {
				return false, "", harness.Permanent(err)
			}
			var done, bad int
			err := e.Pool.QueryRow(ctx, `SELECT count(DISTINCT customer_id) FILTER (WHERE outcome = 'success'),
					count(*) FILTER (WHERE outcome IN ('held', 'untrusted', 'failed', 'interrupted') AND finished_at > $2)
				FROM vomosync.recon_runs WHERE kind = 'full' AND started_at >= $1`, since, lastTrigger).Scan(&done, &bad)
			if err != nil {
				return false, "", err
			}
			if bad > 0 && time.Since(lastTrigger) > 2*time.Second {
				// A run that could not finish (a walk that changed under it,
				// a fault) is retried at once instead of after an hour.
				if err := trigger(); err != nil {
					return false, "", err
				}
				lastTrigger = time.Now()
			}
			rep, err := checker.Diff(ctx, in)
			if err != nil {
				return false, "", err
			}
			var pending int
			if err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.outbox WHERE status = 'pending'`).Scan(&pending); err != nil {
				return false, "", err
			}
			ok := done >= len(in.Customers) && pending == 0 &&
				rep.Counts[checker.Lost]+rep.Counts[checker.Stale]+rep.Counts[checker.Unexpected] == 0
			return ok, fmt.Sprintf("%d/%d customers reconciled, %d effects pending, %s", done, len(in.Customers), pending, countsLine(rep)), nil
		})
}

func (r *Runner) check(ctx context.Context, s Scenario, e *Env, in checker.Input, res *Result) error {
	nc, js, err := e.Connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	stream, err := checker.ReadStream(ctx, js, customer.Users)
	if err != nil {
		return err
	}
	in.Published = stream.Versions
	in.Claimed, in.Samples = e.Sampler.Claimed()
	in.Exempt = e.exempt
	in.Actions = []string{"welcome"}
	in.Deliveries = e.Hook.Deliveries()
	in.EffectsSince = e.effectsSince
	rep, err := checker.Check(ctx, in)
	if err != nil {
		return err
	}
	res.Report = rep
	res.Violations = rep.Violations()
	if s.Verify != nil {
		more, err := s.Verify(ctx, e, &rep)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		res.Violations = append(res.Violations, more...)
	}
	// Twice the fault-free time, but at least the baseline plus TimeSlack:
	// in an 8 s short run one service restart or ack wait is a quarter of
	// the budget; in the long profile (minutes) 2x is the rule.
	if limit := max(2*res.Baseline, res.Baseline+timeSlack); !s.NoTimeLimit && res.Baseline > 0 && s.Name != BaselineName && res.Duration > limit {
		res.Violations = append(res.Violations, fmt.Sprintf("converged in %s, more than the limit %s (fault-free %s)",
			res.Duration.Round(100*time.Millisecond), limit.Round(100*time.Millisecond), res.Baseline.Round(100*time.Millisecond)))
	}
	var deaths []string
	for _, name := range []string{"poller", "processor", "reconciler"} {
		if svc := e.Service(name); svc != nil && svc.Deaths() > 0 {
			deaths = append(deaths, fmt.Sprintf("%s=%d", name, svc.Deaths()))
		}
	}
	res.Deaths = strings.Join(deaths, ", ")
	return nil
}

func countsLine(r checker.Report) string {
	return fmt.Sprintf("lost=%d stale=%d unexpected=%d %s", r.Counts[checker.Lost], r.Counts[checker.Stale],
		r.Counts[checker.Unexpected], strings.Join(r.Examples[:min(2, len(r.Examples))], "; "))
}

// DefaultWorkDir is where scratch directories go.
func DefaultWorkDir() string { return filepath.Join(os.TempDir()) }

// Config is one invocation of the suite.
type Config struct {
	Profile Profile
	Seed    int64
	// Pattern selects scenarios by name (nil: all of the profile).
	Pattern *regexp.Regexp
	Keep    bool
	Out     io.Writer
	// All runs the long-only scenarios too, at this profile's size.
	All bool
	// FromHead builds the binaries from the committed HEAD instead of the
	// working tree.
	FromHead bool
}

// RunProfile builds the binaries, runs the baseline and the selected
// scenarios and prints the tables and a summary.
func RunProfile(ctx context.Context, c Config) ([]Result, error) {
	if c.Out == nil {
		c.Out = io.Discard
	}
	binDir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(binDir)
	start := time.Now()
	fmt.Fprintf(c.Out, "building binaries into %s\n", binDir)
	root := harness.RepoRoot()
	if c.FromHead {
		if root, err = harness.SnapshotHead(ctx, root); err != nil {
			return nil, err
		}
		defer os.RemoveAll(root)
	}
	bin, err := harness.Build(ctx, root, binDir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.Out, "built in %s; profile %s, seed %d\n", time.Since(start).Round(100*time.Millisecond), c.Profile.Name, c.Seed)
	r := &Runner{Profile: c.Profile, Seed: c.Seed, Bin: bin, Keep: c.Keep, Out: c.Out}
	sel := c.Profile
	if c.All {
		sel = Profiles["long"]
	}
	results := r.RunAll(ctx, Scenarios(sel, c.Pattern))
	PrintSummary(c.Out, results)
	fmt.Fprintf(c.Out, "\ntotal %s\n", time.Since(start).Round(time.Second))
	return results, ctx.Err()
}
