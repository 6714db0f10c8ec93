package cli

import (
	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/cmd/syncctl/internal/demo"
	"github.com/vomosync/vomosync/pkg/config"
)

func (a *app) demoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Run the whole system locally (embedded NATS, vomosim, every service); DEMO_FOR=90s stops by itself",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Parse[demo.Config]()
			if err != nil {
				return err
			}
			return (&demo.Demo{Cfg: cfg, Out: a.out}).Run(a.ctx)
		},
	}
}
