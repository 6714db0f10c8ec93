package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/vomosync/vomosync/tests/chaos/checker"
	"github.com/vomosync/vomosync/tests/faultkit"
)

// The database scenario makes PostgreSQL refuse a share of the services'
// writes the way a busy production database does: serialization failures
// (40001) and deadlocks (40P01) raised by a statement trigger on the tables
// every service writes, and connections cut mid-statement
// (pg_terminate_backend, which a failover looks like). Every transaction
// must be retried and commit; nothing may be dead-lettered for it.

// dbFaultTables are the tables written by the poller (cycle, checkpoint,
// lease), the processor (state, audit, outbox) and the reconciler.
var dbFaultTables = []string{
	"vomosync.schedules", "vomosync.checkpoints", "vomosync.poll_cycles",
	"vomosync.sync_state", "vomosync.audit_log", "vomosync.outbox",
	"vomosync.recon_runs", "vomosync.recon_gaps",
}

// destTable is the Postgres destination's table of users, created by the
// processor on its first write.
const destTable = "vomo_dest.users"

func dbFaults(share40001, share40P01 float64, tables ...string) []faultkit.StatementFault {
	var out []faultkit.StatementFault
	for _, t := range tables {
		out = append(out,
			faultkit.StatementFault{Table: t, SQLState: faultkit.SerializationFailure, Share: share40001},
			faultkit.StatementFault{Table: t, SQLState: faultkit.DeadlockDetected, Share: share40P01})
	}
	return out
}

func init() {
	const share40001, share40P01 = 0.015, 0.01
	Register(Scenario{
		Name: "db-statement-faults",
		Description: fmt.Sprintf("%.1f%% serialization failures and %.0f%% deadlocks on the statements writing every service's tables "+
			"and the destination, and 20%% of the busy connections cut (pg_terminate_backend) every 1.5-3 s", 100*share40001, 100*share40P01),
		Short: true,
		Faults: func(ctx context.Context, e *Env) error {
			if err := faultkit.InstallStatementFaults(ctx, e.Pool, dbFaults(share40001, share40P01, dbFaultTables...)...); err != nil {
				return err
			}
			defer func() {
				// Leave the database whole: the convergence is measured without faults.
				pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				if err := faultkit.PauseStatementFaults(pctx, e.Pool); err != nil {
					e.Note("pause statement faults: %v", err)
				}
				fired, err := faultkit.FiredStatementFaults(pctx, e.Pool)
				if err != nil {
					e.Note("count statement faults: %v", err)
					return
				}
				e.Add("statements failed with 40001", int(fired[faultkit.SerializationFailure]))
				e.Add("statements failed with 40P01", int(fired[faultkit.DeadlockDetected]))
				e.Set("db-fired", fired)
			}()
			term := &faultkit.Terminator{DB: e.Pool, Database: e.DB.Name, ApplicationName: "vomosync", Share: 0.2, BusyOnly: true}
			destFaulted := false
			return e.Every(ctx, 1500*time.Millisecond, 3*time.Second, func() error {
				if !destFaulted {
					var exists bool
					if err := e.Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, destTable).Scan(&exists); err == nil && exists {
						if err := faultkit.InstallStatementFaults(ctx, e.Pool, dbFaults(share40001, share40P01, destTable)...); err != nil {
							return err
						}
						destFaulted = true
					}
				}
				// The harness's own connections share the application name:
				// a cut sampler query only skips one sample.
				n, err := term.Once(ctx)
				if err == nil {
					e.Add("connections cut mid-statement", n)
				}
				return nil
			})
		},
		Verify: func(ctx context.Context, e *Env, _ *checker.Report) ([]string, error) {
			var v []string
			fired, _ := e.Get("db-fired").(map[string]int64)
			if fired[faultkit.SerializationFailure] == 0 || fired[faultkit.DeadlockDetected] == 0 {
				v = append(v, fmt.Sprintf("statement faults had no effect (fired %v): the trigger is not on the tables the services write", fired))
			}
			rows, err := e.Pool.Query(ctx, `SELECT record_id, error_class, left(error, 200) FROM vomosync.dead_letters ORDER BY id LIMIT 5`)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			for rows.Next() {
				var id, class, msg string
				if err := rows.Scan(&id, &class, &msg); err != nil {
					return nil, err
				}
				v = append(v, fmt.Sprintf("record %s dead-lettered (%s: %s): a transient database error must be retried, not dead-lettered", id, class, msg))
			}
			return v, rows.Err()
		},
	})
}
