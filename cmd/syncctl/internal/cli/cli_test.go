package cli_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/cmd/syncctl/internal/cli"
	"github.com/vomosync/vomosync/pkg/pgtest"
)

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Execute(context.Background(), "test", args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// Not parallel: commands read their configuration from the process environment.
func TestCustomersCheckpointsAndStatus(t *testing.T) {
	db := pgtest.New(t)
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	t.Setenv("DATABASE_URL", db.URL)
	t.Setenv("VOMOSYNC_KEK", base64.StdEncoding.EncodeToString(kb))

	code, out, errOut := run(t, "super-secret-token\n", "customers", "add", "--id", "acme", "--resources", "users,groups")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "acme added")

	code, _, errOut = run(t, "tok\n", "customers", "add", "--id", "Bad.Id")
	require.Equal(t, cli.ExitError, code)
	require.Contains(t, errOut, "customer id")

	code, out, _ = run(t, "", "customers", "list", "-o", "json")
	require.Equal(t, cli.ExitOK, code)
	require.NotContains(t, out, "super-secret-token")
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list, 1)

	code, _, errOut = run(t, "", "checkpoint", "set", "--customer", "acme", "--resource", "users", "--to", "2026-01-01T00:00:00Z")
	require.Equal(t, cli.ExitUsage, code, "reason is required")
	require.Contains(t, errOut, "reason")

	code, out, errOut = run(t, "", "checkpoint", "set", "--customer", "acme", "--resource", "users",
		"--to", "2026-01-01T00:00:00Z", "--reason", "incident 42", "--yes")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "vomosync.checkpoints[acme/users]")
	var reason, actor string
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT reason, actor FROM vomosync.checkpoint_decisions WHERE customer_id = 'acme'`).Scan(&reason, &actor))
	require.Equal(t, "incident 42", reason)
	require.True(t, strings.HasPrefix(actor, "operator:"))
	var groups string
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT position::text FROM vomosync.checkpoints WHERE customer_id = 'acme' AND resource = 'groups'`).Scan(&groups))
	require.Contains(t, groups, "1970", "the reset touched only the named resource")

	code, out, _ = run(t, "", "status", "--customer", "acme")
	require.Equal(t, cli.ExitOK, code, out)
	require.Contains(t, out, "users")

	code, _, _ = run(t, "", "customers", "disable", "--id", "acme")
	require.Equal(t, cli.ExitOK, code)
	code, out, _ = run(t, "", "status")
	require.Equal(t, cli.ExitUnhealthy, code, "a disabled customer is reported")
	require.Contains(t, out, "disabled")

	code, out, _ = run(t, "", "cost", "-o", "json")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "saving")
}
