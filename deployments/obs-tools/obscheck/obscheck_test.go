package obscheck_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/deployments/obs-tools/obscheck"
)

func TestSelectors(t *testing.T) {
	t.Parallel()
	got, err := obscheck.Selectors(`sum by (customer_id) (rate(vomosync_vomo_requests_total{code=~"5.."}[5m]))
		/ on (customer_id) group_left {__name__="vomosync_poll_cycles_total", outcome="success"}`)
	require.NoError(t, err)
	require.Equal(t, []obscheck.Selector{
		{Name: "vomosync_vomo_requests_total", Labels: []string{"code"}},
		{Name: "vomosync_poll_cycles_total", Labels: []string{"outcome"}},
	}, got)

	_, err = obscheck.Selectors(`{__name__=~"vomosync_.+"}`)
	require.ErrorContains(t, err, "no literal metric name")
	_, err = obscheck.Selectors(`rate(vomosync_poll_cycles_total[5m]`)
	require.Error(t, err)
}

func TestGrafanaExpr(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`rate(x_total{customer_id=~"$customer_id"}[$__rate_interval])`: `rate(x_total{customer_id=~"$customer_id"}[5m])`,
		`increase(x_total[${__range}])`:                                `increase(x_total[5m])`,
		`label_values(vomosync_poll_cadence_seconds, customer_id)`:     `vomosync_poll_cadence_seconds`,
		`label_values(x{customer_id="$customer_id"},resource)`:         `x{customer_id="$customer_id"}`,
		`query_result(topk(5, x))`:                                     `topk(5, x)`,
		`label_values(customer_id)`:                                    ``,
	} {
		require.Equal(t, want, obscheck.GrafanaExpr(in), in)
	}
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	c, err := obscheck.Exported()
	require.NoError(t, err)
	names := c.Names()
	for _, n := range []string{
		"vomosync_poll_cycles_total", "vomosync_dlq_depth", "vomosync_poll_last_success_timestamp_seconds",
		"vomosync_vomo_request_duration_seconds_bucket", "vomosync_process_batch_size_count", "up", "ALERTS",
	} {
		require.Contains(t, names, n)
	}
	require.NotContains(t, names, "vomosync_vomo_request_duration_seconds", "a histogram is queried by its series")
	require.NotContains(t, names, "vomosync_dlq_depth_bucket", "only histograms have buckets")

	ok := []obscheck.Selector{
		{Name: "vomosync_poll_cycles_total", Labels: []string{"customer_id", "outcome", "job"}},
		{Name: "vomosync_vomo_request_duration_seconds_bucket", Labels: []string{"endpoint", "le"}},
		{Name: "go_goroutines", Labels: []string{"service"}},
		{Name: "process_start_time_seconds"},
	}
	for _, s := range ok {
		require.NoError(t, c.Check(s), s.Name)
	}
	require.ErrorContains(t, c.Check(obscheck.Selector{Name: "vomosync_poll_cycle_total"}), "not exported")
	require.ErrorContains(t, c.Check(obscheck.Selector{Name: "vomosync_dlq_depth", Labels: []string{"resource"}}), `no label "resource"`)
	require.ErrorContains(t, c.Check(obscheck.Selector{Name: "vomosync_dlq_depth_sum"}), "not exported")

	require.Error(t, c.Check(obscheck.Selector{Name: "customer:vomosync_dlq_depth:max"}))
	c.AddRecorded("customer:vomosync_dlq_depth:max")
	require.NoError(t, c.Check(obscheck.Selector{Name: "customer:vomosync_dlq_depth:max", Labels: []string{"anything"}}))
}
