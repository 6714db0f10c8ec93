package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/config"
)

func TestConfigDefaultsAndErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1/db", "NATS_URL": "nats://127.0.0.1:4333", "VOMOSYNC_KEK": "k"}
	cfg, err := config.ParseFrom[Config](env)
	require.NoError(t, err)
	require.Equal(t, 2, cfg.Concurrency)
	require.Equal(t, time.Hour, cfg.RetryAfter)
	require.Equal(t, 1000, cfg.BatchSize)
	require.InDelta(t, 0.5, cfg.BudgetReserve, 1e-9)
	require.Equal(t, 3, cfg.PersistRuns)
	require.Equal(t, 30*time.Minute, cfg.StallTimeout)

	for k, v := range map[string]string{"RECONCILER_BUDGET_RESERVE": "1", "RECONCILER_PERSIST_RUNS": "1",
		"RECONCILER_LEASE": "1s", "RECONCILER_BATCH_SIZE": "0", "RECONCILER_STALL_TIMEOUT": "90s"} {
		bad := map[string]string{k: v}
		for ek, ev := range env {
			bad[ek] = ev
		}
		_, err := config.ParseFrom[Config](bad)
		require.ErrorContains(t, err, k)
	}
	delete(env, "VOMOSYNC_KEK")
	_, err = config.ParseFrom[Config](env)
	require.ErrorContains(t, err, "VOMOSYNC_KEK")
}
