package chaos

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/vomosync/vomosync/services/vomosim/sim"
	"github.com/vomosync/vomosync/tests/chaos/checker"
)

// The clock scenarios skew every clock against the others: the API's (the
// simulator's per-customer clock moves its Date header and the updated_at
// it stamps), the poller's and the reconciler's (VOMOSYNC_CLOCK_SKEW), with
// PostgreSQL's as the reference. The API also stamps its writes in groups
// of 16 sharing one second, so every page boundary falls inside a tie.
// Windows must follow the API's clock, so nothing is skipped or re-read
// for ever, whichever way the clocks disagree.

const skew = 90 * time.Second

// skewScenario skews the poller by pollerSkew, the reconciler by
// -pollerSkew, customer c1's API by apiSkew and c2's by -apiSkew (c2 also
// lists by updated_at, so ties sit at the page edges of the walk order).
func skewScenario(name string, short bool, pollerSkew, apiSkew time.Duration) Scenario {
	return Scenario{
		Name: name,
		Description: fmt.Sprintf("poller clock %s, reconciler %s; API clock %s (c1) and %s (c2), writes stamped 16 to a second "+
			"(ties at every page edge)", signed(pollerSkew), signed(-pollerSkew), signed(apiSkew), signed(-apiSkew)),
		Short: short,
		Prepare: func(_ context.Context, p *Prep) (func(), error) {
			p.ServiceEnv["poller"] = append(p.ServiceEnv["poller"], "VOMOSYNC_CLOCK_SKEW="+pollerSkew.String())
			p.ServiceEnv["reconciler"] = append(p.ServiceEnv["reconciler"], "VOMOSYNC_CLOCK_SKEW="+(-pollerSkew).String())
			return nil, nil
		},
		Faults: func(ctx context.Context, e *Env) error {
			// The services are already polling: the API's clock steps by
			// ±90 s under them, as an NTP correction would.
			for i, c := range e.CustomerIDs() {
				f := sim.Faults{ClockSkew: sim.Duration(apiSkew)}
				f.SharedUpdatedAt = 16
				if i%2 == 1 {
					f.ClockSkew = sim.Duration(-apiSkew)
					f.Order = "updated_at"
				}
				if err := e.Sim.SetFaults(c, f); err != nil {
					return err
				}
				e.Count("API clock " + signed(time.Duration(f.ClockSkew)))
			}
			e.Set("skewed-at", time.Now())
			<-ctx.Done()
			return nil
		},
		Verify: func(ctx context.Context, e *Env, _ *checker.Report) ([]string, error) {
			since, _ := e.Get("skewed-at").(time.Time)
			var v []string
			for i, c := range e.CustomerIDs() {
				want := apiSkew
				if i%2 == 1 {
					want = -apiSkew
				}
				// A cycle's window ends at the API's clock (minus the
				// 1 ms settle), so window_to - finished_at (database
				// clock) is the API's skew, whatever the poller's clock.
				var got *float64
				err := e.Pool.QueryRow(ctx, `SELECT extract(epoch FROM window_to - finished_at)::float8 FROM vomosync.poll_cycles
					WHERE customer_id = $1 AND outcome = 'success' AND window_to IS NOT NULL AND started_at > $2
					ORDER BY finished_at DESC LIMIT 1`, c, since.Add(2*time.Second)).Scan(&got)
				if err != nil {
					return nil, fmt.Errorf("last cycle of %s: %w", c, err)
				}
				if got == nil || math.Abs(*got-want.Seconds()) > 20 {
					v = append(v, fmt.Sprintf("%s: the last window ended %v s from the database clock, want about %v s (the API's clock)",
						c, got, want.Seconds()))
				}
			}
			return v, nil
		},
	}
}

func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

func init() {
	Register(skewScenario("clock-skew", true, skew, skew))
	Register(skewScenario("clock-skew-opposed", false, -skew, skew))
}
