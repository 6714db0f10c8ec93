// Package maintain runs the processor's housekeeping: daily audit-log
// partitions created ahead and dropped past retention, finished outbox rows
// pruned, and the gauges that need a query (consumer lag, dead-letter depth,
// outbox backlog). Table work runs under an advisory lock, so one replica
// does it at a time.
package maintain

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/metrics"
)

const lockID = 0x766f6d70 // "vomp": processor maintenance

// Loop is the maintenance loop.
type Loop struct {
	DB              *pgxpool.Pool
	Metrics         *metrics.Processor
	Log             zerolog.Logger
	Interval        time.Duration
	DaysAhead       int
	Retention       time.Duration
	OutboxRetention time.Duration
	// Consumer and Lag feed the consumer gauges (optional).
	Consumer jetstream.Consumer
	Lag      func() time.Duration

	lastTables time.Time
	dlqSeen    map[string]bool
}

// Run refreshes gauges every Interval and does table work hourly.
func (l *Loop) Run(ctx context.Context) error {
	t := time.NewTicker(l.Interval)
	defer t.Stop()
	for {
		if err := l.Once(ctx); err != nil && ctx.Err() == nil {
			l.Log.Warn().Err(err).Msg("maintenance failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once runs one round: gauges always, table work when an hour has passed.
func (l *Loop) Once(ctx context.Context) error {
	if err := l.gauges(ctx); err != nil {
		return err
	}
	if time.Since(l.lastTables) < time.Hour {
		return nil
	}
	if err := l.Tables(ctx); err != nil {
		return err
	}
	l.lastTables = time.Now()
	return nil
}

// Tables creates audit partitions ahead, drops expired ones and prunes the
// outbox, unless another replica is doing it right now.
func (l *Loop) Tables(ctx context.Context) error {
	start := time.Now()
	var made, dropped int
	var pruned int64
	var got bool
	err := pgx.BeginFunc(ctx, l.DB, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, lockID).Scan(&got); err != nil || !got {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT vomosync.ensure_audit_partitions($1)`, l.DaysAhead).Scan(&made); err != nil {
			return fmt.Errorf("audit partitions: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT vomosync.drop_audit_partitions($1::interval)`, l.Retention).Scan(&dropped); err != nil {
			return fmt.Errorf("audit retention: %w", err)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM vomosync.outbox WHERE status <> 'pending' AND created_at < now() - $1::interval`, l.OutboxRetention)
		if err != nil {
			return fmt.Errorf("outbox prune: %w", err)
		}
		pruned = tag.RowsAffected()
		return nil
	})
	if err == nil && !got {
		return nil // another replica is on it
	}
	l.Log.Info().Str(logging.FOperation, "maintenance").Int("partitions_created", made).Int("partitions_dropped", dropped).
		Int64("outbox_pruned", pruned).Int64(logging.FDurationMS, time.Since(start).Milliseconds()).Err(err).Msg("audit and outbox maintenance")
	return err
}

func (l *Loop) gauges(ctx context.Context) error {
	m := l.Metrics
	if l.Consumer != nil {
		info, err := l.Consumer.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer info: %w", err)
		}
		m.ConsumerPending.Set(float64(info.NumPending))
		m.AckPending.Set(float64(info.NumAckPending))
		age := 0.0
		if info.NumPending+uint64(info.NumAckPending) > 0 && l.Lag != nil {
			age = l.Lag().Seconds()
		}
		m.OldestPending.Set(age)
	}
	var backlog int64
	if err := l.DB.QueryRow(ctx, `SELECT count(*) FROM vomosync.outbox WHERE status = 'pending'`).Scan(&backlog); err != nil {
		return fmt.Errorf("outbox backlog: %w", err)
	}
	m.OutboxBacklog.Set(float64(backlog))
	rows, err := l.DB.Query(ctx, `SELECT customer_id, count(*) FROM vomosync.dead_letters WHERE status = 'open' GROUP BY 1`)
	if err != nil {
		return fmt.Errorf("dlq depth: %w", err)
	}
	depth := map[string]int64{}
	for rows.Next() {
		var c string
		var n int64
		if err := rows.Scan(&c, &n); err != nil {
			rows.Close()
			return err
		}
		depth[c] = n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if l.dlqSeen == nil {
		l.dlqSeen = map[string]bool{}
	}
	for c := range l.dlqSeen {
		if _, ok := depth[c]; !ok {
			m.DLQDepth.WithLabelValues(c).Set(0)
		}
	}
	for c, n := range depth {
		l.dlqSeen[c] = true
		m.DLQDepth.WithLabelValues(c).Set(float64(n))
	}
	return nil
}
