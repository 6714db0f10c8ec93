package runner

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/pgtest"
)

func TestGaugesFollowCustomerStatus(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		_, err := db.Pool.Exec(ctx, `INSERT INTO vomosync.customers (id, token_ciphertext, token_wrapped_key, kek_id) VALUES ($1, '', '', 'k')`, id)
		require.NoError(t, err)
	}
	m := metrics.NewPoller(prometheus.NewRegistry())
	g := &Gauges{DB: db.Pool, Metrics: m, Every: time.Hour, Log: zerolog.Nop()}
	m.LastSuccess.WithLabelValues("b", "users").SetToCurrentTime()

	_, err := db.Pool.Exec(ctx, `UPDATE vomosync.customers SET status = 'paused', status_reason = 'VOMO rejected the API token (401)' WHERE id = 'a'`)
	require.NoError(t, err)
	require.NoError(t, g.refresh(ctx))
	require.InDelta(t, 1, testutil.ToFloat64(m.CustomerPaused.WithLabelValues("a", "auth")), 0)

	_, err = db.Pool.Exec(ctx, `UPDATE vomosync.customers SET status = CASE id WHEN 'a' THEN 'active' ELSE 'disabled' END`)
	require.NoError(t, err)
	require.NoError(t, g.refresh(ctx))
	require.Zero(t, testutil.CollectAndCount(m.CustomerPaused), "a resumed customer is no longer reported paused")
	require.Zero(t, testutil.CollectAndCount(m.LastSuccess), "a disabled customer's series are gone")
}
