package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/services/console/ops"
	"github.com/vomosync/vomosync/services/poller/webhook"
)

func (a *app) customersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "customers", Short: "Add, list, disable customers and rotate their tokens"}
	cmd.AddCommand(a.customersAddCmd(), a.customersListCmd(), a.customersDisableCmd(), a.customersSetTokenCmd(), a.customersSetWebhookSecretCmd(), a.customersRewrapCmd())
	return cmd
}

// readToken takes the token from an environment variable or stdin, never
// from a flag value (flags show up in process lists and shell history).
func (a *app) readToken(tokenEnv string) (string, error) {
	if tokenEnv != "" {
		t := os.Getenv(tokenEnv)
		if t == "" {
			return "", fmt.Errorf("environment variable %s is empty", tokenEnv)
		}
		return t, nil
	}
	line, err := bufio.NewReader(a.in).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no token: pipe it on stdin or name a variable with --token-env")
	}
	return strings.TrimSpace(line), nil
}

// audit records an action of the operator running syncctl (never a token).
func (a *app) audit(db ops.DBTX, action, customer, reason string, detail map[string]any) error {
	return ops.Record(a.ctx, db, ops.Action{Actor: operator(), Via: ops.ViaSyncctl, Action: action, Customer: customer,
		Reason: reason, Detail: detail})
}

func (a *app) customersAddCmd() *cobra.Command {
	var n customer.New
	var resources, tokenEnv string
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Add a customer; the VOMO token is read from stdin or --token-env and stored encrypted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, keys, err := a.poolAndKeys()
			if err != nil {
				return err
			}
			defer pool.Close()
			if n.Token, err = a.readToken(tokenEnv); err != nil {
				return err
			}
			if resources != "" {
				n.Resources = strings.Split(resources, ",")
			}
			if err := customer.NewStore(pool, keys).Add(a.ctx, n); err != nil {
				return err
			}
			if err := a.audit(pool, "customer_add", n.ID, "", map[string]any{"resources": n.Resources}); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "customer %s added (%s)\n", n.ID, strings.Join(n.Resources, ","))
			return nil
		},
	}
	cmd.Flags().StringVar(&n.ID, "id", "", "customer id (a-z, 0-9, '-', '_')")
	cmd.Flags().StringVar(&n.Name, "name", "", "display name")
	cmd.Flags().StringVar(&n.APIBaseURL, "api-base-url", "", "VOMO API base URL (default https://api.vomo.org/v1)")
	cmd.Flags().StringVar(&resources, "resources", "users", "comma-separated resources to sync")
	cmd.Flags().StringVar(&tokenEnv, "token-env", "", "read the token from this environment variable instead of stdin")
	_ = cmd.MarkFlagRequired("id")
	return cmd
}

type customerRow struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	APIBase   string    `json:"api_base_url"`
	Resources []string  `json:"resources"`
	Status    string    `json:"status"`
	Reason    string    `json:"status_reason,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func (a *app) customersListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List customers (tokens are never shown)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			cs, err := customer.NewStore(pool, nil).List(a.ctx)
			if err != nil {
				return err
			}
			out := make([]customerRow, 0, len(cs))
			rows := make([][]string, 0, len(cs))
			for _, c := range cs {
				out = append(out, customerRow{c.ID, c.Name, c.APIBaseURL, c.Resources, c.Status, c.StatusReason, c.CreatedAt})
				rows = append(rows, []string{c.ID, c.Name, c.Status, strings.Join(c.Resources, ","), c.APIBaseURL, c.StatusReason})
			}
			return a.print(out, []string{"ID", "NAME", "STATUS", "RESOURCES", "API", "REASON"}, rows)
		},
	}
}

func (a *app) customersDisableCmd() *cobra.Command {
	var id, reason string
	cmd := &cobra.Command{
		Use:   "disable",
		Short: "Disable a customer: no more polling or reconciliation until re-enabled",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := customer.NewStore(pool, nil).SetStatus(a.ctx, id, "disabled", reason); err != nil {
				return err
			}
			if err := a.audit(pool, "customer_disable", id, reason, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "customer %s disabled\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "customer id")
	cmd.Flags().StringVar(&reason, "reason", "disabled by operator", "why, in words (shown in status)")
	_ = cmd.MarkFlagRequired("id")
	return cmd
}

func (a *app) customersSetTokenCmd() *cobra.Command {
	var id, tokenEnv string
	cmd := &cobra.Command{
		Use:   "set-token",
		Short: "Replace a customer's VOMO token (read from stdin or --token-env) and resume it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, keys, err := a.poolAndKeys()
			if err != nil {
				return err
			}
			defer pool.Close()
			tok, err := a.readToken(tokenEnv)
			if err != nil {
				return err
			}
			st := customer.NewStore(pool, keys)
			if err := st.SetToken(a.ctx, id, tok); err != nil {
				return err
			}
			if err := st.SetStatus(a.ctx, id, "active", ""); err != nil {
				return err
			}
			if err := a.audit(pool, "customer_set_token", id, "", nil); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "token of %s replaced; customer active\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "customer id")
	cmd.Flags().StringVar(&tokenEnv, "token-env", "", "read the token from this environment variable instead of stdin")
	_ = cmd.MarkFlagRequired("id")
	return cmd
}

func (a *app) customersSetWebhookSecretCmd() *cobra.Command {
	var id, secretEnv string
	cmd := &cobra.Command{
		Use:   "set-webhook-secret",
		Short: "Store the secret VOMO signs this customer's webhooks with (read from stdin or --secret-env), encrypted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, keys, err := a.poolAndKeys()
			if err != nil {
				return err
			}
			defer pool.Close()
			secret, err := a.readToken(secretEnv)
			if err != nil {
				return err
			}
			if _, err := customer.NewStore(pool, nil).Get(a.ctx, id); err != nil {
				return err
			}
			if err := webhook.SetSecret(a.ctx, pool, keys, id, secret); err != nil {
				return err
			}
			if err := a.audit(pool, "customer_set_webhook_secret", id, "", nil); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "webhook secret of %s stored; point VOMO at <poller WEBHOOK_ADDR>/webhooks/vomo/%s\n", id, id)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "customer id")
	cmd.Flags().StringVar(&secretEnv, "secret-env", "", "read the secret from this environment variable instead of stdin")
	_ = cmd.MarkFlagRequired("id")
	return cmd
}

func (a *app) customersRewrapCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rewrap",
		Short: "Re-wrap every token's data key with the current VOMOSYNC_KEK (rotation; the old key goes in VOMOSYNC_KEK_PREVIOUS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, keys, err := a.poolAndKeys()
			if err != nil {
				return err
			}
			defer pool.Close()
			n, err := customer.NewStore(pool, keys).Rewrap(a.ctx)
			if err != nil {
				return err
			}
			w, err := webhook.RewrapSecrets(a.ctx, pool, keys)
			if err != nil {
				return err
			}
			if err := a.audit(pool, "customers_rewrap", "", "", map[string]any{"tokens": n, "webhook_secrets": w, "kek_id": keys.CurrentID()}); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%d token(s) and %d webhook secret(s) re-wrapped under key %s\n", n, w, keys.CurrentID())
			return nil
		},
	}
}
