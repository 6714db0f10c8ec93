package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/services/console/auth"
	"github.com/vomosync/vomosync/services/console/ops"
)

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(io.LimitReader(r, 1<<20)) }

func (a *app) operatorsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "operators", Short: "Console operators: add one, or set a password (passwords are stored as bcrypt hashes)"}
	var user, passEnv string
	readPass := func() (string, error) {
		if passEnv != "" {
			p := os.Getenv(passEnv)
			if p == "" {
				return "", fmt.Errorf("environment variable %s is empty", passEnv)
			}
			return p, nil
		}
		line, err := readAll(a.in)
		p := strings.TrimRight(string(line), "\r\n")
		if err != nil || p == "" {
			return "", errors.New("no password: pipe it on stdin or name a variable with --password-env")
		}
		return p, nil
	}
	// withPassword runs do with the password and a pool, then records action.
	withPassword := func(action, done string, do func(pool auth.DBTX, pass string) error) func(*cobra.Command, []string) error {
		return func(*cobra.Command, []string) error {
			pass, err := readPass()
			if err != nil {
				return err
			}
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := do(pool, pass); err != nil {
				return err
			}
			if err := ops.Record(a.ctx, pool, ops.Action{Actor: operator(), Via: ops.ViaSyncctl, Action: action, Target: user}); err != nil {
				return err
			}
			fmt.Fprintf(a.out, done+"\n", user)
			return nil
		}
	}
	add := &cobra.Command{
		Use: "add", Short: "Add an operator; the password is read from stdin or --password-env, never from a flag", Args: cobra.NoArgs,
		RunE: withPassword("operator_add", "operator %s added", func(pool auth.DBTX, pass string) error {
			return auth.AddOperator(a.ctx, pool, user, pass, operator())
		}),
	}
	passwd := &cobra.Command{
		Use: "passwd", Short: "Set an operator's password (stdin or --password-env) and end its sessions", Args: cobra.NoArgs,
		RunE: withPassword("operator_passwd", "password of %s set; its sessions ended", func(pool auth.DBTX, pass string) error {
			return auth.SetPassword(a.ctx, pool, user, pass)
		}),
	}
	for _, c := range []*cobra.Command{add, passwd} {
		c.Flags().StringVar(&user, "user", "", "operator name")
		c.Flags().StringVar(&passEnv, "password-env", "", "read the password from this environment variable instead of stdin")
		_ = c.MarkFlagRequired("user")
	}
	cmd.AddCommand(add, passwd)
	return cmd
}

func (a *app) consoleTokenCmd() *cobra.Command {
	var cust, label string
	var ttl time.Duration
	var revoke int64
	cmd := &cobra.Command{
		Use:   "console-token",
		Short: "Create a token that shows one customer its own sync health in the console (/portal), or --revoke one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			if revoke > 0 {
				if err := auth.RevokeConsoleToken(a.ctx, pool, cust, revoke); err != nil {
					return err
				}
				if err := ops.Record(a.ctx, pool, ops.Action{Actor: operator(), Via: ops.ViaSyncctl, Action: "console_token_revoke",
					Customer: cust, Target: fmt.Sprint(revoke)}); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "console token %d of %s revoked\n", revoke, cust)
				return nil
			}
			tok, id, err := auth.NewConsoleToken(a.ctx, pool, cust, label, operator(), ttl)
			if err != nil {
				return err
			}
			if err := ops.Record(a.ctx, pool, ops.Action{Actor: operator(), Via: ops.ViaSyncctl, Action: "console_token_create",
				Customer: cust, Target: fmt.Sprint(id), Detail: map[string]any{"label": label, "ttl": ttl.String()}}); err != nil {
				return err
			}
			if a.output == "json" {
				return a.print(map[string]any{"customer_id": cust, "id": id, "token": tok}, nil, nil)
			}
			fmt.Fprintf(a.out, "console token %d for %s (shown once; only its hash is stored):\n%s\n", id, cust, tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&cust, "customer", "", "customer id")
	cmd.Flags().StringVar(&label, "label", "", "what the token is for (e.g. who received it)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "expire after this long (0: until revoked)")
	cmd.Flags().Int64Var(&revoke, "revoke", 0, "revoke the token with this id instead of creating one")
	_ = cmd.MarkFlagRequired("customer")
	return cmd
}
