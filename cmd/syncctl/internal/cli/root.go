// Package cli defines syncctl's commands. Each command parses its config
// from the environment once, does one job, and prints a table or JSON.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/pkg/config"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/services/console/ops"
)

// Exit codes scripts can rely on.
const (
	ExitOK        = 0
	ExitError     = 1
	ExitUsage     = 2
	ExitUnhealthy = 3
)

// ErrUnhealthy makes a command exit with ExitUnhealthy (status found problems).
var ErrUnhealthy = errors.New("unhealthy")

// env is the configuration syncctl reads.
type env struct {
	DB          postgres.Settings
	KEK         string   `env:"VOMOSYNC_KEK"`
	KEKPrevious []string `env:"VOMOSYNC_KEK_PREVIOUS"`
}

// app carries what every command shares.
type app struct {
	ctx    context.Context
	in     io.Reader
	out    io.Writer
	errOut io.Writer
	output string
}

// Execute runs syncctl with args and returns the exit code.
func Execute(ctx context.Context, version string, args []string, in io.Reader, out, errOut io.Writer) int {
	a := &app{ctx: ctx, in: in, out: out, errOut: errOut}
	root := &cobra.Command{
		Use:           "syncctl",
		Short:         "Operate vomosync: customers, status, checkpoints, dead letters, reconciliation, replay",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetArgs(args)
	root.AddCommand(a.migrateCmd(), a.customersCmd(), a.statusCmd(), a.demoCmd(), a.costCmd(), a.checkpointCmd(), a.cyclesCmd(), a.recordsCmd(), a.gapsCmd(), a.apiErrorsCmd(), a.dlqCmd(), a.pauseCmd(), a.resumeCmd(), a.applyCmd(), a.replayCmd(), a.reconcileCmd(), a.operatorsCmd(), a.consoleTokenCmd())
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUnhealthy):
		return ExitUnhealthy
	case isUsage(err):
		fmt.Fprintln(errOut, "syncctl:", err)
		return ExitUsage
	default:
		fmt.Fprintln(errOut, "syncctl:", err)
		return ExitError
	}
}

func isUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "unknown flag") ||
		strings.HasPrefix(s, "required flag") || strings.Contains(s, "invalid argument") ||
		strings.HasPrefix(s, "accepts ") || strings.HasPrefix(s, "usage:")
}

func (a *app) env() (env, error) {
	return config.Parse[env]()
}

func (a *app) pool() (*pgxpool.Pool, env, error) {
	e, err := a.env()
	if err != nil {
		return nil, e, err
	}
	p, err := postgres.Connect(a.ctx, e.DB)
	return p, e, err
}

// scopedDB is a pool or a transaction.
type scopedDB interface {
	ops.DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
}

// scoped runs fn on the pool or, for a command given a customer, in a
// transaction row-level security limits to that customer: a per-customer
// command cannot read or change another customer's rows, even through a
// query that forgot to filter (docs/security.md).
func (a *app) scoped(pool *pgxpool.Pool, customer string, fn func(db scopedDB) error) error {
	if customer == "" {
		return fn(pool)
	}
	return postgres.WithTenant(a.ctx, pool, customer, func(tx pgx.Tx) error { return fn(tx) })
}

// poolAndKeys is a.pool for the commands that also read or write tokens.
// The caller closes the pool.
func (a *app) poolAndKeys() (*pgxpool.Pool, *secrets.Keyring, error) {
	pool, e, err := a.pool()
	if err != nil {
		return nil, nil, err
	}
	keys, err := a.keyring(e)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, keys, nil
}

func (a *app) keyring(e env) (*secrets.Keyring, error) {
	if e.KEK == "" {
		return nil, errors.New("VOMOSYNC_KEK is required for this command (base64 of 32 bytes)")
	}
	return secrets.NewKeyring(e.KEK, e.KEKPrevious...)
}

// print writes rows as a table (header first) or v as JSON.
func (a *app) print(v any, header []string, rows [][]string) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if a.output != "table" {
		return fmt.Errorf("usage: --output must be table or json, not %q", a.output)
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
