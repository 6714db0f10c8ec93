package reconcile_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
)

// With no statistics on sync_state (never analyzed: autovacuum cut short by
// repeated database crashes, as the long chaos profile's pg-immediate run
// left it), the planner takes a customer's rows for one and joins the ids
// the walk listed in a nested loop: without an index that scanned them once
// per sync_state row, and a 50,000-record run did not finish in 14 minutes.
// The plan must reach the listed ids through their index.
func TestDeletionCandidatesPlanWithoutStatistics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	_, err := db.Pool.Exec(ctx, `ALTER TABLE vomosync.sync_state SET (autovacuum_enabled = false);
		INSERT INTO vomosync.sync_state (customer_id, resource, record_id, external_id, source_updated_at)
		SELECT 'acme', 'users', i::text, 'vomo-' || i, now() - interval '1 day' FROM generate_series(1, 5000) i;
		DELETE FROM pg_statistic WHERE starelid = 'vomosync.sync_state'::regclass`)
	require.NoError(t, err)
	ids := make([]string, 4990)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()

	plan, err := reconcile.ExplainDeletions(ctx, conn.Conn(), "acme", "users", ids)
	require.NoError(t, err)
	t.Log(plan)
	require.NotContains(t, plan, "Seq Scan on recon_seen", "the listed ids are reached through their index")
}
