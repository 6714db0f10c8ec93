package ops_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/services/console/ops"
)

// BenchmarkFleetSummary measures the summary page's queries over a fleet of
// 5,000 customers with 5 resources each, a poll cycle history, dead letters
// and a reconciliation run per pair:
//
//	go test -run '^$' -bench FleetSummary -benchtime 20x ./ops/
func BenchmarkFleetSummary(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `
		INSERT INTO vomosync.customers (id, name, token_ciphertext, token_wrapped_key, kek_id, resources)
		SELECT 'c' || i, 'Customer ' || i, '', '', 'k', '{users,groups,projects,form_completions,campaigns}' FROM generate_series(1, 5000) i;
		INSERT INTO vomosync.schedules (customer_id, resource, kind, cadence, last_finished_at, last_outcome)
		SELECT c.id, r, 'poll', interval '30 minutes', now() - (random() * interval '40 minutes'), CASE WHEN random() < 0.02 THEN 'failed' ELSE 'success' END
		FROM vomosync.customers c, unnest(c.resources) r;
		INSERT INTO vomosync.checkpoints (customer_id, resource, position)
		SELECT c.id, r, now() - interval '10 minutes' FROM vomosync.customers c, unnest(c.resources) r;
		INSERT INTO vomosync.dead_letters (customer_id, resource, subject, payload, error, status)
		SELECT 'c' || (random() * 4999 + 1)::int, 'users', 's', '\x00', 'e', CASE WHEN random() < 0.5 THEN 'open' ELSE 'retried' END
		FROM generate_series(1, 50000);
		INSERT INTO vomosync.recon_runs (id, customer_id, resource, kind, mode, trace_id, started_at, outcome, gap_rate)
		SELECT gen_random_uuid(), c.id, r, 'incremental', 'repair', '', now() - d * interval '1 day', 'success', 0
		FROM vomosync.customers c, unnest(c.resources) r, generate_series(1, 7) d;
		ANALYZE`)
	require.NoError(b, err)
	b.Run("evaluate", func(b *testing.B) {
		var s ops.Summary
		for b.Loop() {
			s, err = ops.FleetSummary(ctx, db.Pool, ops.SummaryQuery{})
			require.NoError(b, err)
		}
		require.Equal(b, 5000, s.Customers)
		b.ReportMetric(float64(s.Anomalous), "anomalous")
	})
	// The console keeps the standings for a few seconds: a page view then
	// reads only its page's pairs.
	b.Run("cached", func(b *testing.B) {
		f := &ops.Fleet{DB: db.Pool, TTL: time.Hour}
		_, err := f.Summary(ctx, ops.SummaryQuery{})
		require.NoError(b, err)
		for b.Loop() {
			_, err = f.Summary(ctx, ops.SummaryQuery{All: true, After: "c2"})
			require.NoError(b, err)
		}
	})
	b.Run("customer", func(b *testing.B) {
		for b.Loop() {
			_, err = ops.CustomerHealth(ctx, db.Pool, "c4242")
			require.NoError(b, err)
		}
	})
}
