package cli

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/services/console/ops"
)

func ts(t *time.Time) string {
	if t == nil {
		return "-"
	}
	if t.Unix() <= 0 {
		return "epoch"
	}
	return t.UTC().Format(time.RFC3339)
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (a *app) cyclesCmd() *cobra.Command {
	var q ops.CycleQuery
	cmd := &cobra.Command{
		Use:   "cycles",
		Short: "Recent poll cycles of a customer: window, checkpoint before/after, records, requests, statuses, outcome, trace id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			var cs []ops.Cycle
			err = a.scoped(pool, q.Customer, func(db scopedDB) error {
				cs, err = ops.Cycles(a.ctx, db, q)
				return err
			})
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(cs))
			for _, c := range cs {
				st := make([]string, 0, len(c.Statuses))
				for code, n := range c.Statuses {
					st = append(st, fmt.Sprintf("%s:%d", code, n))
				}
				sort.Strings(st)
				outcome := c.Outcome
				if c.Error != "" {
					outcome += ": " + short(c.Error, 60)
				}
				rows = append(rows, []string{c.StartedAt.UTC().Format(time.RFC3339), c.Resource, c.Origin, outcome,
					ts(c.WindowFrom) + ".." + ts(c.WindowTo), ts(c.CheckpointBefore) + " -> " + ts(c.CheckpointAfter),
					fmt.Sprint(c.RecordsSeen), fmt.Sprint(c.RecordsPublished), fmt.Sprint(c.Requests), strings.Join(st, ","), c.TraceID})
			}
			return a.print(cs, []string{"STARTED", "RESOURCE", "ORIGIN", "OUTCOME", "WINDOW", "CHECKPOINT", "SEEN", "PUBLISHED", "REQUESTS", "STATUSES", "TRACE"}, rows)
		},
	}
	cmd.Flags().StringVar(&q.Customer, "customer", "", "customer id")
	cmd.Flags().StringVar(&q.Resource, "resource", "", "only this resource")
	cmd.Flags().IntVar(&q.Limit, "limit", 20, "how many cycles (at most 500)")
	_ = cmd.MarkFlagRequired("customer")
	return cmd
}

func (a *app) recordsCmd() *cobra.Command {
	var cust, res, id string
	var limit int
	cmd := &cobra.Command{
		Use:   "records",
		Short: "Every processing attempt of one record (newest first), its sync state, dead letters and reconciliation gaps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			var t ops.Trail
			err = a.scoped(pool, cust, func(db scopedDB) error {
				t, err = ops.RecordTrail(a.ctx, db, cust, res, id, limit)
				return err
			})
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.print(t, nil, nil)
			}
			if t.State != nil {
				fmt.Fprintf(a.out, "sync_state: version %s applied %s as %s (deleted=%t, first seen %s, trace %s)\n\n",
					ts(&t.State.SourceUpdatedAt), ts(&t.State.AppliedAt), t.State.ExternalID, t.State.Deleted, ts(&t.State.FirstSeenAt), t.State.TraceID)
			} else {
				fmt.Fprintf(a.out, "sync_state: none (never applied to the destination)\n\n")
			}
			rows := make([][]string, 0, len(t.Attempts))
			for _, at := range t.Attempts {
				rows = append(rows, []string{ts(&at.ProcessedAt), ts(at.RecordUpdatedAt), at.Origin, at.Operation, at.Outcome,
					strings.Join(at.ChangedFields, ","), short(at.Error, 60), at.TraceID})
			}
			if err := a.print(nil, []string{"PROCESSED", "VERSION", "ORIGIN", "OPERATION", "OUTCOME", "CHANGED", "ERROR", "TRACE"}, rows); err != nil {
				return err
			}
			for _, l := range t.DeadLetters {
				fmt.Fprintf(a.out, "dead letter %d (%s): %s %s: %s\n", l.ID, l.Status, ts(&l.LastFailedAt), l.ErrorClass, l.Error)
			}
			for _, g := range t.Gaps {
				fmt.Fprintf(a.out, "gap %s: %s/%s repaired=%t %s\n", ts(&g.FoundAt), g.Class, g.Cause, g.Repaired, g.Detail)
			}
			if len(t.Attempts) == 0 && t.State == nil {
				fmt.Fprintln(a.out, "no attempt recorded: the record was never published (see `syncctl cycles` for windows around its updated_at)")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cust, "customer", "", "customer id")
	cmd.Flags().StringVar(&res, "resource", "", "resource")
	cmd.Flags().StringVar(&id, "id", "", "VOMO record id")
	cmd.Flags().IntVar(&limit, "limit", 200, "attempts to show")
	for _, f := range []string{"customer", "resource", "id"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func (a *app) gapsCmd() *cobra.Command {
	var day, cust string
	var limit int
	cmd := &cobra.Command{
		Use:   "gaps",
		Short: "Reconciliation runs and the gaps they found on a day (UTC), by class and cause",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := time.Parse(time.DateOnly, day)
			if err != nil {
				return fmt.Errorf("usage: --day must be YYYY-MM-DD: %w", err)
			}
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			var g ops.Day
			err = a.scoped(pool, cust, func(db scopedDB) error {
				g, err = ops.GapsOfDay(a.ctx, db, d, cust, limit)
				return err
			})
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.print(g, nil, nil)
			}
			runs := make([][]string, 0, len(g.Runs))
			for _, r := range g.Runs {
				runs = append(runs, []string{ts(&r.StartedAt), r.CustomerID, r.Resource, r.Kind, r.Mode, r.Outcome,
					fmt.Sprint(r.Expected), fmt.Sprintf("%.2f%%", r.GapRate*100), fmt.Sprint(r.Repaired), short(r.Reason, 60), r.TraceID})
			}
			fmt.Fprintf(a.out, "reconciliation runs on %s: %d\n", g.Day, len(g.Runs))
			if err := a.print(nil, []string{"STARTED", "CUSTOMER", "RESOURCE", "KIND", "MODE", "OUTCOME", "EXPECTED", "GAP RATE", "REPAIRED", "REASON", "TRACE"}, runs); err != nil {
				return err
			}
			keys := make([]string, 0, len(g.ByClassCause))
			for k := range g.ByClassCause {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprintln(a.out, "\ngaps by class/cause:")
			for _, k := range keys {
				fmt.Fprintf(a.out, "  %-40s %d\n", k, g.ByClassCause[k])
			}
			gaps := make([][]string, 0, len(g.Gaps))
			for _, x := range g.Gaps {
				gaps = append(gaps, []string{ts(&x.FoundAt), x.CustomerID, x.Resource, x.RecordID, x.Class, x.Cause,
					ts(x.SourceUpdatedAt), ts(x.DestUpdatedAt), fmt.Sprint(x.Repaired)})
			}
			fmt.Fprintln(a.out)
			return a.print(nil, []string{"FOUND", "CUSTOMER", "RESOURCE", "RECORD", "CLASS", "CAUSE", "SOURCE VERSION", "DEST VERSION", "REPAIRED"}, gaps)
		},
	}
	cmd.Flags().StringVar(&day, "day", time.Now().UTC().Format(time.DateOnly), "day (UTC), YYYY-MM-DD")
	cmd.Flags().StringVar(&cust, "customer", "", "only this customer")
	cmd.Flags().IntVar(&limit, "limit", 500, "gaps to list (the counts cover all)")
	return cmd
}

func (a *app) apiErrorsCmd() *cobra.Command {
	var since time.Duration
	var cust string
	cmd := &cobra.Command{
		Use:   "api-errors",
		Short: "Failed VOMO calls grouped by customer, endpoint and status, most frequent first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			var es []ops.APIError
			err = a.scoped(pool, cust, func(db scopedDB) error {
				es, err = ops.APIErrors(a.ctx, db, time.Now().Add(-since), cust, 500)
				return err
			})
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(es))
			for _, e := range es {
				rows = append(rows, []string{e.CustomerID, e.Endpoint, fmt.Sprint(e.Status), fmt.Sprint(e.Count), ts(&e.Last), short(e.LastError, 60), e.TraceID})
			}
			return a.print(es, []string{"CUSTOMER", "ENDPOINT", "STATUS", "COUNT", "LAST", "LAST ERROR", "TRACE"}, rows)
		},
	}
	cmd.Flags().DurationVar(&since, "since", time.Hour, "how far back")
	cmd.Flags().StringVar(&cust, "customer", "", "only this customer")
	return cmd
}
