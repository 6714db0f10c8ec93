// Package chaos runs the whole system under injected faults and checks every
// record against the source truth.
//
// A run builds the binaries once, measures a fault-free baseline and then
// runs each selected scenario on a fresh stack (package harness): the real
// poller and processor as supervised processes, JetStream in its own
// process, PostgreSQL, the simulator and an action endpoint. While the
// workload changes the source, the scenario injects its faults and a sampler
// records what the checkpoints claim. Then the faults stop, the system
// converges, a full reconciliation deletes what the source deleted, and the
// checker (package checker) classifies every record and checks the
// invariants. A scenario passes when nothing is lost, stale, unexpected or
// duplicated, no checkpoint was ahead of the stream, the audit log is
// complete, its own Verify finds nothing, and it converged within twice the
// baseline's time.
//
// # Adding a scenario
//
// Put one file per scenario in this package (scenario_<name>.go) and register
// it from an init function:
//
//	func init() {
//		Register(Scenario{
//			Name:        "kill-processor",
//			Description: "kill -9 of the processor every 1-3 s",
//			Short:       true, // also in the short profile (every scenario is in the long one)
//			Faults: func(ctx context.Context, e *Env) error {
//				return e.Every(ctx, time.Second, 3*time.Second, func() error {
//					e.Service("processor").Kill() // the supervisor restarts it
//					e.Count("kill -9 processor")
//					return nil
//				})
//			},
//		})
//	}
//
// Faults runs while the workload changes the source and must return, with
// the system whole again (servers started, partitions healed), when its
// context ends. The other hooks are optional: Prepare adjusts the stack
// before it starts (own PostgreSQL cluster, small filesystems, extra
// environment, or ErrSkip), Settings the customers' settings, Workload the
// profile's size, AfterConverge plants damage before the final
// reconciliation, and Verify adds the scenario's own violations. Use
// e.Count for every fault injected (it appears in the table), e.Rand for
// every random choice (seeded by -seed), and e.Exempt for stream messages
// the scenario itself removed.
package chaos
