package cli

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
)

type statusRow struct {
	Customer      string     `json:"customer_id"`
	Status        string     `json:"customer_status"`
	Resource      string     `json:"resource"`
	Checkpoint    *time.Time `json:"checkpoint"`
	LagSeconds    float64    `json:"lag_seconds"`
	LastOutcome   string     `json:"last_outcome"`
	LastFinished  *time.Time `json:"last_finished_at"`
	NextRun       time.Time  `json:"next_run_at"`
	Paused        bool       `json:"paused"`
	Reason        string     `json:"reason,omitempty"`
	OpenDeadLetts int        `json:"open_dead_letters"`
}

const statusSQL = `
SELECT c.id, c.status, s.resource, cp.position, coalesce(s.last_outcome, ''), s.last_finished_at, s.next_run_at,
       s.paused, coalesce(nullif(c.status_reason, ''), s.paused_reason),
       (SELECT count(*) FROM vomosync.dead_letters d WHERE d.customer_id = c.id AND d.resource = s.resource AND d.status = 'open')
FROM vomosync.customers c
JOIN vomosync.schedules s ON s.customer_id = c.id AND s.kind = 'poll' AND s.resource = ANY (c.resources)
LEFT JOIN vomosync.checkpoints cp ON cp.customer_id = c.id AND cp.resource = s.resource
WHERE $1 = '' OR c.id = $1
ORDER BY c.id, s.resource`

func (a *app) statusCmd() *cobra.Command {
	var cust string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Each customer's resources: checkpoint, lag, last cycle, dead letters (exit 3 when any is unhealthy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			var out []statusRow
			err = a.scoped(pool, cust, func(db scopedDB) error {
				rows, err := db.Query(a.ctx, statusSQL, cust)
				if err != nil {
					return err
				}
				out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (statusRow, error) {
					var s statusRow
					err := r.Scan(&s.Customer, &s.Status, &s.Resource, &s.Checkpoint, &s.LastOutcome, &s.LastFinished,
						&s.NextRun, &s.Paused, &s.Reason, &s.OpenDeadLetts)
					if s.Checkpoint != nil {
						s.LagSeconds = time.Since(*s.Checkpoint).Seconds()
					}
					return s, err
				})
				return err
			})
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			unhealthy := false
			table := make([][]string, 0, len(out))
			for _, s := range out {
				cp, lag := "lost", "-"
				if s.Checkpoint != nil {
					cp, lag = s.Checkpoint.UTC().Format(time.RFC3339), time.Duration(s.LagSeconds*float64(time.Second)).Round(time.Second).String()
					if s.Checkpoint.Unix() <= 0 {
						cp = "epoch (backfill)"
					}
				}
				if s.Status != "active" || s.Paused || s.LastOutcome == "failed" || s.Checkpoint == nil {
					unhealthy = true
				}
				table = append(table, []string{s.Customer, s.Status, s.Resource, cp, lag, s.LastOutcome,
					fmt.Sprint(s.OpenDeadLetts), s.Reason})
			}
			if err := a.print(out, []string{"CUSTOMER", "STATUS", "RESOURCE", "CHECKPOINT", "LAG", "LAST CYCLE", "DLQ", "REASON"}, table); err != nil {
				return err
			}
			if unhealthy {
				return ErrUnhealthy
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cust, "customer", "", "only this customer")
	return cmd
}
