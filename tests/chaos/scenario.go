package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/tests/chaos/checker"
	"github.com/vomosync/vomosync/tests/chaos/harness"
)

// Scenario is one fault experiment. Only Name and Description are required.
type Scenario struct {
	// Name is unique and matched by the -scenario regexp.
	Name        string
	Description string
	// Short puts the scenario in the short profile too (scaled down);
	// every scenario is in the long profile.
	Short bool
	// KnownFailure, when set, says why the scenario is expected to fail
	// (a bug the lead has to decide on): its violations are printed but do
	// not fail the run.
	KnownFailure string

	// Prepare adjusts the stack's options before it starts. Return ErrSkip
	// (wrapped with the reason) when the machine cannot run the scenario.
	// The returned cleanup, if any, runs after the stack is closed.
	Prepare func(ctx context.Context, p *Prep) (cleanup func(), err error)
	// Settings adjusts every customer's settings.
	Settings func(s *customer.Settings)
	// Workload adjusts the profile's workload.
	Workload func(w *harness.Workload)
	// Faults injects faults while the workload runs; it must leave the
	// system whole when ctx ends.
	Faults func(ctx context.Context, e *Env) error
	// AfterConverge runs once the destination matches the source (before
	// deletions are reconciled), e.g. to plant loss for the reconciler.
	AfterConverge func(ctx context.Context, e *Env) error
	// Verify returns the scenario's own violations after the check.
	Verify func(ctx context.Context, e *Env, r *checker.Report) ([]string, error)
	// MinConverge raises the profile's convergence timeout for a scenario
	// that stalls on purpose.
	MinConverge time.Duration
	// NoTimeLimit exempts the scenario from the 2× baseline time rule
	// (e.g. when it waits for a retention window on purpose); say why in
	// Description.
	NoTimeLimit bool
}

// Prep is what Prepare may change.
type Prep struct {
	// Dir is the scenario's scratch directory.
	Dir     string
	Options *harness.Options
	// ServiceEnv is added to one service's environment, by service name
	// (poller, processor, reconciler).
	ServiceEnv map[string][]string
	Profile    Profile
	// Skip leaves records ("customer/id") out of the source/destination
	// comparison: records the scenario makes malformed on purpose (its
	// Verify checks them instead).
	Skip map[string]bool
}

// ErrSkip marks a scenario the machine cannot run; wrap it with the reason.
var ErrSkip = errors.New("skipped")

var (
	regMu     sync.Mutex
	scenarios = map[string]Scenario{}
)

// Register adds a scenario; it panics on a duplicate or unnamed one (a
// programming error found at start).
func Register(s Scenario) {
	regMu.Lock()
	defer regMu.Unlock()
	if s.Name == "" || s.Description == "" {
		panic("chaos: scenario needs a name and a description")
	}
	if _, ok := scenarios[s.Name]; ok {
		panic("chaos: scenario " + s.Name + " registered twice")
	}
	scenarios[s.Name] = s
}

// Scenarios returns the registered scenarios in the profile whose name
// matches re (nil: all), baseline first, then by name.
func Scenarios(p Profile, re *regexp.Regexp) []Scenario {
	regMu.Lock()
	defer regMu.Unlock()
	var out []Scenario
	for _, s := range scenarios {
		if p.Name == "short" && !s.Short {
			continue
		}
		if re != nil && !re.MatchString(s.Name) {
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Name == BaselineName) != (out[j].Name == BaselineName) {
			return out[i].Name == BaselineName
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Lookup returns a registered scenario.
func Lookup(name string) (Scenario, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	s, ok := scenarios[name]
	return s, ok
}

// Env is what a scenario's hooks work with: the running stack plus the
// run's seeded randomness and fault accounting.
type Env struct {
	*harness.Stack
	Profile  Profile
	Workload harness.Workload
	// Rand is seeded by the run's seed and the scenario name.
	Rand    *rand.Rand
	Sampler *harness.Sampler
	// Began is when the workload started.
	Began time.Time

	mu     sync.Mutex
	counts map[string]int
	exempt map[checker.Version]bool
	skip   map[string]bool
	// effectsSince: records first seen before it may lack a side effect
	// (the action was configured later).
	effectsSince time.Time
	notes        []string
	values       map[string]any
}

// Count records n faults of a kind (shown in the scenario's table).
func (e *Env) Count(kind string) { e.Add(kind, 1) }

// Add records n faults of a kind.
func (e *Env) Add(kind string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts[kind] += n
}

// Note adds a line to the scenario's report.
func (e *Env) Note(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

// Exempt marks versions the scenario removed from the stream itself, so
// the checker counts them as published.
func (e *Env) Exempt(vs ...checker.Version) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range vs {
		e.exempt[v] = true
	}
}

// Set and Get pass values between a scenario's hooks.
func (e *Env) Set(key string, v any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.values[key] = v
}

// Get returns a value stored by Set.
func (e *Env) Get(key string) any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.values[key]
}

// Intn returns a seeded random int in [0, n).
func (e *Env) Intn(n int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.Rand.IntN(n)
}

// Between returns a seeded random duration in [lo, hi].
func (e *Env) Between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return lo + time.Duration(e.Rand.Int64N(int64(hi-lo)+1))
}

// Every calls fn after a seeded random pause in [lo, hi], again and again,
// until ctx ends (nil) or fn fails.
func (e *Env) Every(ctx context.Context, lo, hi time.Duration, fn func() error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(e.Between(lo, hi)):
		}
		if err := fn(); err != nil {
			return err
		}
	}
}

func (e *Env) faultSummary() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.counts) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(e.counts))
	for k := range e.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, e.counts[k])
	}
	return strings.Join(parts, ", ")
}
