package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/vomosync/vomosync/tests/chaos/checker"
)

// The kill scenarios: processes die with SIGKILL (no cleanup, no drain) at
// random moments or at the services' instrumented fault points, and come
// back like a container would.

func init() {
	Register(Scenario{
		Name:        "kill-processor",
		Description: "kill -9 of the processor every 1-3 s (restarted after 200 ms)",
		Short:       true,
		Faults: func(ctx context.Context, e *Env) error {
			return e.Every(ctx, time.Second, 3*time.Second, func() error {
				e.Service("processor").Kill()
				e.Count("kill -9 processor")
				return nil
			})
		},
	})

	Register(Scenario{
		Name: "kill-poller-points",
		Description: "the poller kills itself at its instrumented points (VOMOSYNC_FAULTS: after fetch, after publish, " +
			"inside the checkpoint transaction) and is restarted",
		Short: true,
		Prepare: func(_ context.Context, p *Prep) (func(), error) {
			// Fetches and publishes grow with the pages of a backfill, so
			// their odds shrink with the customer's size: a couple of deaths
			// per customer's backfill at every size. At the long size the
			// short size's odds meant ~270 deaths in the backfill alone and
			// broke the time rule with nothing lost. Checkpoint transactions
			// come once a cycle, which follows the clock, not the size.
			scale := min(1, 1000/float64(max(p.Profile.Workload.Users, 1)))
			p.ServiceEnv["poller"] = append(p.ServiceEnv["poller"],
				fmt.Sprintf("VOMOSYNC_FAULTS=poller.after_fetch=%.5f,poller.after_publish=%.5f,poller.checkpoint_tx=0.05", 0.02*scale, 0.05*scale),
				fmt.Sprintf("VOMOSYNC_FAULT_SEED=%d", p.Options.SimSeed))
			return nil, nil
		},
		Verify: func(_ context.Context, e *Env, _ *checker.Report) ([]string, error) {
			n := e.Service("poller").Deaths()
			e.Add("poller fault-point deaths", n)
			if n == 0 {
				return []string{"the poller never died at a fault point: VOMOSYNC_FAULTS had no effect (pkg/faults not wired into the poller?)"}, nil
			}
			return nil, nil
		},
	})

	Register(Scenario{
		Name:        "kill-nats",
		Description: "kill -9 of the JetStream server (file store) every 1.5-3 s, back after 0.2-1.5 s on the same port and store",
		Short:       true,
		Faults: func(ctx context.Context, e *Env) error {
			return e.Every(ctx, 1500*time.Millisecond, 3*time.Second, func() error {
				e.NATS.Kill()
				e.Count("kill -9 nats-server")
				time.Sleep(e.Between(200*time.Millisecond, 1500*time.Millisecond))
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				return e.NATS.Start(sctx)
			})
		},
	})

	Register(Scenario{
		Name:        "pg-immediate",
		Description: "PostgreSQL (own cluster) stopped with pg_ctl stop -m immediate every 2-4 s, started again after 0.5-2 s (crash recovery)",
		Short:       true,
		Prepare: func(_ context.Context, p *Prep) (func(), error) {
			p.Options.OwnPostgres = true
			return nil, nil
		},
		Faults: func(ctx context.Context, e *Env) error {
			return e.Every(ctx, 2*time.Second, 4*time.Second, func() error {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
				defer cancel()
				if err := e.Cluster.StopImmediate(sctx); err != nil {
					return err
				}
				e.Count("pg_ctl stop -m immediate")
				time.Sleep(e.Between(500*time.Millisecond, 2*time.Second))
				if err := e.Cluster.Start(sctx); err != nil {
					return fmt.Errorf("%w\n%s", err, e.Cluster.LogTail())
				}
				return nil
			})
		},
	})
}
