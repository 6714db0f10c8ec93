package ops_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/services/console/consoletest"
	"github.com/vomosync/vomosync/services/console/ops"
)

// Under acme's tenant, every read model answers for acme only, even when a
// query names globex or no customer at all: the database enforces it.
func TestReadModelUnderATenantSeesOneCustomer(t *testing.T) {
	t.Parallel()
	f := consoletest.Seed(t)
	ctx := context.Background()
	require.NoError(t, postgres.WithTenant(ctx, f.App, "acme", func(tx pgx.Tx) error {
		_, err := ops.CustomerHealth(ctx, tx, "globex")
		require.ErrorIs(t, err, ops.ErrNotFound)
		c, err := ops.CustomerHealth(ctx, tx, "acme")
		require.NoError(t, err)
		require.NotEmpty(t, c.Pairs)

		cs, err := ops.Cycles(ctx, tx, ops.CycleQuery{Customer: "globex"})
		require.NoError(t, err)
		require.Empty(t, cs)
		tr, err := ops.RecordTrail(ctx, tx, "globex", "users", f.GlobexRecord, 10)
		require.NoError(t, err)
		require.Nil(t, tr.State)
		require.Empty(t, tr.Attempts)
		require.Empty(t, tr.DeadLetters)
		require.Empty(t, tr.Gaps)
		ls, err := ops.DeadLetters(ctx, tx, ops.LetterQuery{Customer: "globex", Status: "all"})
		require.NoError(t, err)
		require.Empty(t, ls)

		// "" means every customer to these queries: the tenant still limits them.
		d, err := ops.GapsOfDay(ctx, tx, time.Now().UTC(), "", 100)
		require.NoError(t, err)
		require.Empty(t, d.Runs)
		require.Empty(t, d.Gaps)
		es, err := ops.APIErrors(ctx, tx, time.Now().Add(-time.Hour), "", 100)
		require.NoError(t, err)
		require.Empty(t, es)
		as, err := ops.Actions(ctx, tx, "", time.Time{}, 100)
		require.NoError(t, err)
		for _, a := range as {
			require.Equal(t, "acme", a.Customer)
		}
		sum, err := ops.FleetSummary(ctx, tx, ops.SummaryQuery{All: true})
		require.NoError(t, err)
		require.Equal(t, 1, sum.Customers)
		require.Equal(t, "acme", sum.Page[0].ID)

		// Writes to globex change nothing.
		_, err = ops.Pause(ctx, tx, "test", ops.ViaSyncctl, "globex", "", "x")
		require.ErrorIs(t, err, ops.ErrNotFound)
		return nil
	}))
	var status string
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT status FROM vomosync.customers WHERE id = 'globex'`).Scan(&status))
	require.Equal(t, "active", status)
}
