// Package faults owns the fault injection a service carries for the chaos
// suite: kill points (the process SIGKILLs itself at a named place with a
// configured probability) and a skewed clock. Both are off unless
// VOMOSYNC_FAULTS or VOMOSYNC_CLOCK_SKEW is set; a nil *Injector is a no-op,
// so an unconfigured service pays one nil check per point.
package faults

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Kill points. A point is placed where a crash is the hardest to survive.
const (
	// PollerAfterFetch: a list page arrived, its records not yet published.
	PollerAfterFetch = "poller.after_fetch"
	// PollerAfterPublish: JetStream acknowledged published events, the
	// checkpoint not yet advanced.
	PollerAfterPublish = "poller.after_publish"
	// PollerCheckpointTx: inside the transaction advancing the checkpoint,
	// before it commits.
	PollerCheckpointTx = "poller.checkpoint_tx"
	// ReconcilerMidRepair: some gaps republished and marked repaired, the
	// run not finished.
	ReconcilerMidRepair = "reconciler.mid_repair"
)

// Points lists every known kill point.
var Points = []string{PollerAfterFetch, PollerAfterPublish, PollerCheckpointTx, ReconcilerMidRepair}

// ErrConfig wraps every configuration error of this package.
var ErrConfig = errors.New("faults")

// Settings is the fault block of a service's environment.
type Settings struct {
	// Spec is "point=probability,...", e.g. "poller.after_fetch=0.05".
	Spec string `env:"VOMOSYNC_FAULTS"`
	// Seed seeds the kill decisions (mixed with the pid, see New); empty
	// picks a random one, logged so a run can be repeated. Ignored without Spec.
	Seed string `env:"VOMOSYNC_FAULT_SEED"`
	// ClockSkew shifts the service's own wall clock (may be negative).
	ClockSkew time.Duration `env:"VOMOSYNC_CLOCK_SKEW"`
}

// Setup validates s and returns the injector (nil when no point is
// configured) and the service's clock. When anything is injected it logs a
// loud warning: a production process must never run with these set.
// Errors wrap ErrConfig and name the variable.
func (s Settings) Setup(log zerolog.Logger) (*Injector, func() time.Time, error) {
	var inj *Injector
	if strings.TrimSpace(s.Spec) != "" {
		seed := rand.Uint64()
		if s.Seed != "" {
			v, err := strconv.ParseUint(s.Seed, 10, 64)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: VOMOSYNC_FAULT_SEED=%q: want an unsigned integer", ErrConfig, s.Seed)
			}
			seed = v
		}
		probs, err := ParseSpec(s.Spec)
		if err != nil {
			return nil, nil, err
		}
		inj = New(probs, seed^uint64(os.Getpid())*0x9e3779b97f4a7c15)
		log.Warn().Str("faults", inj.String()).Uint64("fault_seed", seed).Int("pid", os.Getpid()).
			Msg("FAULT INJECTION ENABLED (VOMOSYNC_FAULTS): this process SIGKILLs itself at the listed points; never set it in production")
	}
	// A seed without faults is harmless (a harness may set it for every
	// service) and ignored.
	if s.ClockSkew != 0 {
		log.Warn().Str("clock_skew", s.ClockSkew.String()).
			Msg("CLOCK SKEW INJECTED (VOMOSYNC_CLOCK_SKEW): this process's wall clock is shifted; never set it in production")
	}
	return inj, Skewed(s.ClockSkew), nil
}

// Skewed returns a clock d ahead of the local one (behind when negative).
// Its monotonic reading moves by d too: measure durations between two of
// its readings, or with time.Now and time.Since, never mixing the two.
func Skewed(d time.Duration) func() time.Time {
	if d == 0 {
		return time.Now
	}
	return func() time.Time { return time.Now().Add(d) }
}

// ParseSpec parses "point=probability,..." and rejects unknown points,
// repeated points and probabilities outside [0, 1]. Errors wrap ErrConfig.
func ParseSpec(spec string) (map[string]float64, error) {
	probs := map[string]float64{}
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, val, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok {
			return nil, fmt.Errorf("%w: VOMOSYNC_FAULTS item %q: want point=probability", ErrConfig, item)
		}
		if !slices.Contains(Points, name) {
			return nil, fmt.Errorf("%w: VOMOSYNC_FAULTS: unknown point %q (known: %s)", ErrConfig, name, strings.Join(Points, ", "))
		}
		if _, dup := probs[name]; dup {
			return nil, fmt.Errorf("%w: VOMOSYNC_FAULTS: point %q given twice", ErrConfig, name)
		}
		p, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || p < 0 || p > 1 {
			return nil, fmt.Errorf("%w: VOMOSYNC_FAULTS: %s=%q: want a probability in [0, 1]", ErrConfig, name, val)
		}
		probs[name] = p
	}
	return probs, nil
}

// Injector decides, at each point, whether the process dies there.
type Injector struct {
	probs map[string]float64
	mu    sync.Mutex
	rng   *rand.Rand
	// action replaces the kill (tests).
	action func(point string)
}

// New returns an injector firing each point with its probability. The
// decisions are a function of seed and the order points are reached.
// Setup mixes the pid into the seed so a restarted process does not replay
// the very decision that killed its previous life (and never get past it).
func New(probs map[string]float64, seed uint64) *Injector {
	return &Injector{probs: probs, rng: rand.New(rand.NewPCG(seed, seed>>32|seed<<32))}
}

// WithAction makes a fired point call fn instead of killing the process,
// so tests can check where the points sit. It returns i.
func (i *Injector) WithAction(fn func(point string)) *Injector {
	i.action = fn
	return i
}

// Point SIGKILLs the process with the point's probability; it does not
// return when it fires. Nil or unconfigured points do nothing.
func (i *Injector) Point(name string) {
	if !i.Fire(name) {
		return
	}
	if i.action != nil {
		i.action(name)
		return
	}
	killSelf()
}

// Fire draws the decision for one arrival at the point without acting on it.
func (i *Injector) Fire(name string) bool {
	if i == nil {
		return false
	}
	p, ok := i.probs[name]
	if !ok || p <= 0 {
		return false
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.rng.Float64() < p
}

// String lists the configured points, sorted.
func (i *Injector) String() string {
	if i == nil {
		return ""
	}
	parts := make([]string, 0, len(i.probs))
	for _, n := range Points {
		if p, ok := i.probs[n]; ok {
			parts = append(parts, n+"="+strconv.FormatFloat(p, 'g', -1, 64))
		}
	}
	return strings.Join(parts, ",")
}
