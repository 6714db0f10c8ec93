package cli

import (
	"errors"
	"fmt"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/pkg/checkpoint"
	"github.com/vomosync/vomosync/pkg/config"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/services/console/ops"
)

func operator() string {
	if u, err := user.Current(); err == nil {
		return "operator:" + u.Username
	}
	return "operator:unknown"
}

func (a *app) checkpointCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "checkpoint", Short: "Show, set or restore a checkpoint (every change is recorded with its reason)"}
	var cust, res, reason, at string
	var yes bool
	show := &cobra.Command{
		Use: "show", Short: "Checkpoints and lag of a customer (all resources) or of every customer", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			var cps []checkpoint.Checkpoint
			err = a.scoped(pool, cust, func(db scopedDB) error {
				cps, err = checkpoint.List(a.ctx, db, cust)
				return err
			})
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(cps))
			for _, c := range cps {
				rows = append(rows, []string{c.CustomerID, c.Resource, c.Position.UTC().Format(time.RFC3339),
					time.Since(c.Position).Round(time.Second).String(), c.UpdatedAt.UTC().Format(time.RFC3339)})
			}
			return a.print(cps, []string{"CUSTOMER", "RESOURCE", "POSITION", "LAG", "WRITTEN"}, rows)
		},
	}
	show.Flags().StringVar(&cust, "customer", "", "customer id")

	set := &cobra.Command{
		Use: "set", Short: "Set a checkpoint to a time (RFC 3339, or 'epoch' for a full re-sync)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pos := checkpoint.Epoch
			if at != "epoch" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return fmt.Errorf("usage: --to must be RFC 3339 or 'epoch': %w", err)
				}
				pos = t
			}
			return a.decide(cust, res, "set", reason, &pos, yes)
		},
	}
	set.Flags().StringVar(&at, "to", "", "new position (RFC 3339 or epoch)")
	restore := &cobra.Command{
		Use: "restore", Short: "Restore a checkpoint from its backup copy in the JetStream KV bucket", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns, err := config.Parse[struct{ NATS messaging.Settings }]()
			if err != nil {
				return err
			}
			if ns.NATS.URL == "" {
				return errors.New("NATS_URL is required to read the backup")
			}
			nc, js, err := messaging.Connect(a.ctx, ns.NATS.URL, "syncctl", ns.NATS.ConnectTimeout)
			if err != nil {
				return err
			}
			defer nc.Close()
			kv, err := js.KeyValue(a.ctx, messaging.CheckpointBucket)
			if err != nil {
				return fmt.Errorf("checkpoint backup bucket: %w", err)
			}
			pos, saved, err := (&checkpoint.Backup{KV: kv}).Get(a.ctx, cust, res)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "backup of %s/%s: %s (saved %s)\n", cust, res, pos.Format(time.RFC3339), saved.Format(time.RFC3339))
			return a.decide(cust, res, "restore_backup", reason, &pos, yes)
		},
	}
	for _, c := range []*cobra.Command{set, restore} {
		c.Flags().StringVar(&cust, "customer", "", "customer id")
		c.Flags().StringVar(&res, "resource", "", "resource")
		c.Flags().StringVar(&reason, "reason", "", "why (required; recorded in checkpoint_decisions)")
		c.Flags().BoolVar(&yes, "yes", false, "apply without asking")
		_ = c.MarkFlagRequired("customer")
		_ = c.MarkFlagRequired("resource")
		_ = c.MarkFlagRequired("reason")
	}
	_ = set.MarkFlagRequired("to")
	cmd.AddCommand(show, set, restore)
	return cmd
}

// decide shows exactly what will change, asks unless yes, then applies the
// change and its audit row in one transaction.
func (a *app) decide(cust, res, strategy, reason string, pos *time.Time, yes bool) error {
	pool, _, err := a.pool()
	if err != nil {
		return err
	}
	defer pool.Close()
	old := "missing"
	if cp, err := checkpoint.Get(a.ctx, pool, cust, res); err == nil {
		old = cp.Position.UTC().Format(time.RFC3339)
	} else if !errors.Is(err, checkpoint.ErrNotFound) {
		return err
	}
	fmt.Fprintf(a.out, "will change only vomosync.checkpoints[%s/%s]: %s -> %s (and record the decision)\n", cust, res, old, pos.UTC().Format(time.RFC3339))
	if !yes && !a.confirm() {
		return errors.New("not confirmed; nothing changed")
	}
	err = checkpoint.Decide(a.ctx, pool, checkpoint.Decision{CustomerID: cust, Resource: res, Actor: operator(),
		Strategy: strategy, Reason: reason, New: pos})
	if err != nil {
		return err
	}
	if err := ops.Record(a.ctx, pool, ops.Action{Actor: operator(), Via: ops.ViaSyncctl, Action: "checkpoint_" + strategy,
		Customer: cust, Resource: res, Reason: reason, Detail: map[string]any{"old": old, "new": pos.UTC().Format(time.RFC3339)}}); err != nil {
		return err
	}
	// A held pair resumes once an operator has decided.
	if _, err := pool.Exec(a.ctx, `UPDATE vomosync.schedules SET paused = false, paused_reason = '', next_run_at = now()
		WHERE customer_id = $1 AND resource = $2 AND kind = 'poll' AND paused_reason LIKE 'primary checkpoint missing%'`, cust, res); err != nil {
		return err
	}
	fmt.Fprintln(a.out, "done")
	return nil
}

func (a *app) confirm() bool {
	fmt.Fprint(a.out, "proceed? [y/N] ")
	var s string
	_, _ = fmt.Fscanln(a.in, &s)
	return s == "y" || s == "yes"
}
