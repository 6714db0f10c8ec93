package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/cmd/syncctl/internal/custfile"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/services/console/ops"
)

func (a *app) applyCmd() *cobra.Command {
	var file string
	var yes bool
	cmd := &cobra.Command{
		Use:   "apply -f customer.yaml",
		Short: "Apply a customer's configuration (resources, cadences, budget, destination, recovery, reconciliation) after showing the diff",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var data []byte
			var err error
			if file == "-" {
				data, err = readAll(a.in)
			} else {
				data, err = os.ReadFile(file) // #nosec G304 -- the operator names the file
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", file, err)
			}
			f, err := custfile.Parse(data)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			st := customer.NewStore(pool, nil)
			cur, err := st.Get(a.ctx, f.ID)
			if errors.Is(err, customer.ErrNotFound) {
				return fmt.Errorf("customer %s does not exist: add it with `syncctl customers add --id %s` (the token is needed), then apply", f.ID, f.ID)
			}
			if err != nil {
				return err
			}
			changes, err := custfile.Diff(cur, f)
			if err != nil {
				return err
			}
			if a.output == "json" && (yes || len(changes) == 0) {
				defer func() { _ = a.print(map[string]any{"customer_id": f.ID, "changes": changes}, nil, nil) }()
			}
			if len(changes) == 0 {
				if a.output != "json" {
					fmt.Fprintf(a.out, "customer %s: no changes\n", f.ID)
				}
				return nil
			}
			if a.output != "json" {
				fmt.Fprintf(a.out, "customer %s: %d change(s)\n", f.ID, len(changes))
				for _, c := range changes {
					fmt.Fprintf(a.out, "  %s: %s -> %s\n", c.Path, c.Old, c.New)
				}
			}
			if !yes && (a.output == "json" || !a.confirm()) {
				return errors.New("not confirmed; nothing changed (pass --yes)")
			}
			if err := st.SetSettings(a.ctx, f.ID, f.Resources, f.Settings); err != nil {
				return err
			}
			detail := map[string]any{"changes": changes}
			if err := ops.Record(a.ctx, pool, ops.Action{Actor: operator(), Via: ops.ViaSyncctl, Action: "apply", Customer: f.ID,
				Target: file, Detail: detail}); err != nil {
				return err
			}
			if a.output != "json" {
				fmt.Fprintln(a.out, "applied")
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "customer YAML file ('-' for stdin)")
	cmd.Flags().BoolVar(&yes, "yes", false, "apply without asking")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}
