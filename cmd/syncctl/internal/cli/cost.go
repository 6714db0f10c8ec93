package cli

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
)

type costRow struct {
	Customer        string  `json:"customer_id"`
	Resource        string  `json:"resource"`
	Cycles          int     `json:"cycles"`
	RequestsPerPoll float64 `json:"requests_per_cycle"`
	CadenceSeconds  float64 `json:"cadence_seconds"`
	PerDay          float64 `json:"requests_per_day"`
	UniformPerDay   float64 `json:"requests_per_day_at_15m"`
}

// costSQL averages the requests of recorded incremental cycles per pair and
// projects them over a day at the configured cadence and at a uniform 15m.
const costSQL = `
SELECT s.customer_id, s.resource, count(p.id), coalesce(avg(p.requests), 0), extract(epoch FROM s.cadence)
FROM vomosync.schedules s
LEFT JOIN vomosync.poll_cycles p ON p.customer_id = s.customer_id AND p.resource = s.resource
	AND p.origin = 'poll' AND p.outcome = 'success' AND p.started_at > now() - $2::interval
WHERE s.kind = 'poll' AND ($1 = '' OR s.customer_id = $1)
GROUP BY s.customer_id, s.resource, s.cadence
ORDER BY s.customer_id, s.resource`

func (a *app) costCmd() *cobra.Command {
	var cust string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "cost",
		Short: "API requests a day per customer and resource at the configured cadences, against a uniform 15-minute cadence",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			var out []costRow
			err = a.scoped(pool, cust, func(db scopedDB) error {
				rows, err := db.Query(a.ctx, costSQL, cust, since)
				if err != nil {
					return err
				}
				out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (costRow, error) {
					var c costRow
					err := r.Scan(&c.Customer, &c.Resource, &c.Cycles, &c.RequestsPerPoll, &c.CadenceSeconds)
					// A pair without recorded cycles still costs at least one request a cycle.
					per := max(c.RequestsPerPoll, 1)
					c.PerDay = per * 86400 / c.CadenceSeconds
					c.UniformPerDay = per * 96
					return c, err
				})
				return err
			})
			if err != nil {
				return fmt.Errorf("cost: %w", err)
			}
			var tuned, uniform float64
			table := make([][]string, 0, len(out)+1)
			for _, c := range out {
				tuned += c.PerDay
				uniform += c.UniformPerDay
				table = append(table, []string{c.Customer, c.Resource, fmt.Sprint(c.Cycles), fmt.Sprintf("%.1f", c.RequestsPerPoll),
					time.Duration(c.CadenceSeconds * float64(time.Second)).String(), fmt.Sprintf("%.0f", c.PerDay), fmt.Sprintf("%.0f", c.UniformPerDay)})
			}
			saving := 0.0
			if uniform > 0 {
				saving = 1 - tuned/uniform
			}
			table = append(table, []string{"TOTAL", "", "", "", "", fmt.Sprintf("%.0f", tuned), fmt.Sprintf("%.0f (saving %.0f%%)", uniform, saving*100)})
			return a.print(map[string]any{"pairs": out, "requests_per_day": tuned, "requests_per_day_at_15m": uniform, "saving": saving},
				[]string{"CUSTOMER", "RESOURCE", "CYCLES", "REQ/CYCLE", "CADENCE", "REQ/DAY", "REQ/DAY AT 15m"}, table)
		},
	}
	cmd.Flags().StringVar(&cust, "customer", "", "only this customer")
	cmd.Flags().DurationVar(&since, "since", 7*24*time.Hour, "cycles recorded in this period")
	return cmd
}
