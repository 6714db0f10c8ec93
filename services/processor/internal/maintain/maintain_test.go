package maintain_test

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
	"github.com/vomosync/vomosync/services/processor/internal/maintain"
)

func TestPartitionsRetentionAndGauges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	exec := func(sql string, args ...any) {
		_, err := db.Pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	count := func(sql string, args ...any) int {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, sql, args...).Scan(&n))
		return n
	}
	// A row written today before any partition existed, an expired
	// partition, and an expired row in the default partition.
	exec(`INSERT INTO vomosync.audit_log (customer_id, resource, record_id, origin, outcome) VALUES ('a', 'users', '1', 'poll', 'applied')`)
	exec(`CREATE TABLE vomosync.audit_log_p20250101 PARTITION OF vomosync.audit_log FOR VALUES FROM ('2025-01-01') TO ('2025-01-02')`)
	exec(`INSERT INTO vomosync.audit_log (customer_id, resource, record_id, origin, outcome, processed_at) VALUES
		('a', 'users', '2', 'poll', 'applied', '2025-01-01 10:00+00'), ('a', 'users', '3', 'poll', 'applied', '2025-02-01 10:00+00')`)
	exec(`INSERT INTO vomosync.dead_letters (customer_id, resource, subject, payload, error) VALUES
		('acme', 'users', 's', '', 'e'), ('acme', 'users', 's', '', 'e'), ('globex', 'users', 's', '', 'e')`)
	exec(`INSERT INTO vomosync.outbox (dedup_key, customer_id, resource, record_id, external_id, action, url, payload, status, created_at)
		VALUES ('old', 'acme', 'users', '1', 'vomo-1', 'w', 'https://example.org', '{}', 'delivered', now() - interval '60 days'),
		       ('new', 'acme', 'users', '2', 'vomo-2', 'w', 'https://example.org', '{}', 'pending', now())`)

	m := metrics.NewProcessor(prometheus.NewRegistry())
	l := &maintain.Loop{DB: db.Pool, Metrics: m, Log: zerolog.Nop(), Interval: time.Second, DaysAhead: 2,
		Retention: 30 * 24 * time.Hour, OutboxRetention: 30 * 24 * time.Hour}
	require.NoError(t, l.Once(ctx))

	today := time.Now().Format("20060102")
	require.Equal(t, 3, count(`SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname ~ '^audit_log_p[0-9]{8}$' AND relname >= 'audit_log_p'||$1`, today), "today and 2 days ahead")
	require.Equal(t, 1, count(`SELECT count(*) FROM vomosync.audit_log WHERE record_id = '1' AND tableoid::regclass::text = 'vomosync.audit_log_p'||$1`, today),
		"today's row moved out of the default partition")
	require.Equal(t, 0, count(`SELECT count(*) FROM pg_class WHERE relname = 'audit_log_p20250101'`), "expired partition dropped")
	require.Equal(t, 0, count(`SELECT count(*) FROM vomosync.audit_log WHERE record_id IN ('2', '3')`), "expired rows gone")
	require.Equal(t, 1, count(`SELECT count(*) FROM vomosync.outbox`), "finished outbox rows pruned")
	require.Equal(t, 2.0, testutil.ToFloat64(m.DLQDepth.WithLabelValues("acme")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.DLQDepth.WithLabelValues("globex")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.OutboxBacklog))

	exec(`UPDATE vomosync.dead_letters SET status = 'discarded' WHERE customer_id = 'globex'`)
	require.NoError(t, l.Once(ctx))
	require.Equal(t, 0.0, testutil.ToFloat64(m.DLQDepth.WithLabelValues("globex")), "a resolved customer drops to zero")
	require.NoError(t, l.Tables(ctx), "idempotent")
}
