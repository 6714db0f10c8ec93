package cli

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/services/console/ops"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
)

func (a *app) reconcileCmd() *cobra.Command {
	var req reconcile.Request
	var dry bool
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Run one reconciliation now, in process (what the reconciler runs); --dry-run publishes nothing",
		Long: `reconcile compares VOMO with what vomosync delivered for one customer's resource, records the run
and its gaps (see syncctl gaps), and repairs them as the customer's reconcile mode says. --dry-run
records the run and its gaps but publishes nothing; --full walks everything and detects deletions;
--force applies repairs the run would hold (the operator has looked). Exit 3 when the run held its
repairs or could not trust its walk.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, keys, err := a.poolAndKeys()
			if err != nil {
				return err
			}
			defer pool.Close()
			rec := &reconcile.Reconciler{DB: pool, Customers: customer.NewStore(pool, keys),
				Log: logging.New("syncctl", "warn", a.errOut)}
			if dry {
				req.Mode = reconcile.ModeDryRun
			} else {
				nc, js, err := a.jetStream(a.ctx)
				if err != nil {
					return fmt.Errorf("%w (or pass --dry-run)", err)
				}
				defer nc.Close()
				rec.JS = js
			}
			req.Window, req.Actor = window, operator()
			bar := a.bar(-1, "reconciling "+req.Customer+"/"+req.Resource)
			req.Progress = func(done, total int) {
				if total > 0 {
					barMax(bar, total)
				}
				barSet(bar, done)
			}
			res, err := rec.Run(a.ctx, req)
			barDone(bar)
			if res == nil {
				if errors.Is(err, reconcile.ErrBadRequest) {
					return fmt.Errorf("usage: %w", err)
				}
				return err
			}
			if aerr := ops.Record(a.ctx, pool, ops.Action{Actor: operator(), Via: ops.ViaSyncctl, Action: "reconcile",
				Customer: req.Customer, Resource: req.Resource, Target: res.ID,
				Detail: map[string]any{"full": req.Full, "mode": res.Mode, "force": req.Force, "outcome": res.Outcome}}); aerr != nil {
				return aerr
			}
			if perr := a.printRun(res); perr != nil {
				return perr
			}
			if err != nil {
				return err
			}
			if res.Held || res.Outcome == reconcile.OutcomeUntrusted {
				return ErrUnhealthy
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Customer, "customer", "", "customer id")
	cmd.Flags().StringVar(&req.Resource, "resource", "", "resource")
	cmd.Flags().BoolVar(&req.Full, "full", false, "walk everything and detect deletions (weekly run)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "record what the run finds, publish nothing")
	cmd.Flags().BoolVar(&req.Force, "force", false, "apply repairs even when the run would hold them")
	cmd.Flags().StringVar(&req.Mode, "mode", "", "report or repair (default: the customer's setting)")
	cmd.Flags().DurationVar(&window, "window", 0, "incremental window (default: the customer's daily window)")
	_ = cmd.MarkFlagRequired("customer")
	_ = cmd.MarkFlagRequired("resource")
	return cmd
}

func (a *app) printRun(r *reconcile.RunResult) error {
	if a.output == "json" {
		return a.print(r, nil, nil)
	}
	classes := make([]string, 0, len(r.Gaps))
	for k, v := range r.Gaps {
		classes = append(classes, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(classes)
	causes := make([]string, 0, len(r.Causes))
	for k, v := range r.Causes {
		causes = append(causes, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(causes)
	lines := [][2]string{{"run", r.ID}, {"outcome", r.Outcome}, {"kind/mode", r.Kind + "/" + r.Mode},
		{"window", ts(&r.WindowFrom) + " .. " + ts(&r.WindowTo)}, {"horizon", ts(&r.Horizon)},
		{"compared", fmt.Sprintf("%d of %d source records (%d expected, %d pending)", r.Compared, r.SourceRecords, r.Expected, r.Pending)},
		{"gaps", fmt.Sprintf("%v, rate %.2f%%", classes, r.GapRate*100)}, {"causes", fmt.Sprint(causes)},
		{"repaired", fmt.Sprintf("%d (re-driven dead letters %d)", r.Repaired, r.Redriven)},
		{"requests", fmt.Sprint(r.Requests)}, {"duration", r.Duration.Round(time.Millisecond).String()}, {"trace", r.TraceID}}
	if r.Held {
		lines = append(lines, [2]string{"held", r.HeldReason + " (rerun with --force once you have looked)"})
	}
	if r.Untrusted != "" {
		lines = append(lines, [2]string{"untrusted", r.Untrusted})
	}
	if r.Error != "" {
		lines = append(lines, [2]string{"error", r.Error})
	}
	if r.Note != "" {
		lines = append(lines, [2]string{"note", r.Note})
	}
	for _, l := range lines {
		fmt.Fprintf(a.out, "%-10s %s\n", l[0]+":", l[1])
	}
	fmt.Fprintf(a.out, "gaps are listed by `syncctl gaps --day %s --customer %s`\n", r.Started.UTC().Format(time.DateOnly), r.CustomerID)
	return nil
}
