package metrics_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/metrics"
)

func TestNamesListsEveryMetric(t *testing.T) {
	t.Parallel()
	names := metrics.Names()
	require.Contains(t, names, "vomosync_poll_cycles_total")
	require.Contains(t, names, "vomosync_recon_gap_ratio")
	require.Contains(t, names, "vomosync_dlq_depth")
}
