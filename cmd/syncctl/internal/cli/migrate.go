package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/pkg/postgres"
)

func (a *app) migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply every pending database migration (services refuse to start until this has run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			applied, err := postgres.Migrate(a.ctx, pool)
			if err != nil {
				return err
			}
			latest, _ := postgres.LatestVersion()
			if a.output == "json" {
				return a.print(map[string]any{"applied": applied, "version": latest}, nil, nil)
			}
			fmt.Fprintf(a.out, "applied %d migration(s); schema at version %d\n", len(applied), latest)
			return nil
		},
	}
}
