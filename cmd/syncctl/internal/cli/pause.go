package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/services/console/ops"
)

func (a *app) pauseCmd() *cobra.Command  { return a.pauseResumeCmds()[0] }
func (a *app) resumeCmd() *cobra.Command { return a.pauseResumeCmds()[1] }

func (a *app) pauseResumeCmds() []*cobra.Command {
	mk := func(use, short string, do func(cust, res, reason string) (string, error)) *cobra.Command {
		var cust, res, reason string
		cmd := &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				changed, err := do(cust, res, reason)
				if err != nil {
					return err
				}
				if a.output == "json" {
					return a.print(map[string]string{"changed": changed, "reason": reason}, nil, nil)
				}
				fmt.Fprintln(a.out, "changed", changed)
				return nil
			},
		}
		cmd.Flags().StringVar(&cust, "customer", "", "customer id")
		cmd.Flags().StringVar(&res, "resource", "", "only this resource (default: the whole customer)")
		cmd.Flags().StringVar(&reason, "reason", "", "why, in words (required; shown in status and the console, recorded)")
		_ = cmd.MarkFlagRequired("customer")
		_ = cmd.MarkFlagRequired("reason")
		return cmd
	}
	pause := mk("pause", "Pause polling of a customer or one of its resources (an operator pause does not alert)",
		func(cust, res, reason string) (string, error) {
			pool, _, err := a.pool()
			if err != nil {
				return "", err
			}
			defer pool.Close()
			var changed string
			err = a.scoped(pool, cust, func(db scopedDB) error {
				changed, err = ops.Pause(a.ctx, db, operator(), ops.ViaSyncctl, cust, res, reason)
				return err
			})
			return changed, err
		})
	resume := mk("resume", "Resume polling of a customer or resource (also after a token fix or a held checkpoint); due at once",
		func(cust, res, reason string) (string, error) {
			pool, _, err := a.pool()
			if err != nil {
				return "", err
			}
			defer pool.Close()
			var changed string
			err = a.scoped(pool, cust, func(db scopedDB) error {
				changed, err = ops.Resume(a.ctx, db, operator(), ops.ViaSyncctl, cust, res, reason)
				return err
			})
			return changed, err
		})
	return []*cobra.Command{pause, resume}
}
