package runner

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/metrics"
)

// Gauges keeps the per-customer status gauges true to the database: a
// resumed customer stops reporting paused, and a disabled one drops its
// series so "polling silent" does not fire for it.
type Gauges struct {
	DB      *pgxpool.Pool
	Metrics *metrics.Poller
	Every   time.Duration
	Log     zerolog.Logger
}

// Run refreshes the gauges until ctx ends.
func (g *Gauges) Run(ctx context.Context) error {
	t := time.NewTicker(g.Every)
	defer t.Stop()
	for {
		if err := g.refresh(ctx); err != nil && ctx.Err() == nil {
			g.Log.Warn().Err(err).Msg("refresh customer gauges")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (g *Gauges) refresh(ctx context.Context) error {
	rows, err := g.DB.Query(ctx, `SELECT id, status, status_reason FROM vomosync.customers`)
	if err != nil {
		return err
	}
	defer rows.Close()
	m := g.Metrics
	for rows.Next() {
		var id, status, reason string
		if err := rows.Scan(&id, &status, &reason); err != nil {
			return err
		}
		only := prometheus.Labels{metrics.LCustomer: id}
		switch status {
		case "paused":
			m.CustomerPaused.DeletePartialMatch(only)
			m.CustomerPaused.WithLabelValues(id, pauseReason(reason)).Set(1)
		case "disabled":
			for _, v := range []interface {
				DeletePartialMatch(prometheus.Labels) int
			}{m.Cycles, m.RecordsSeen, m.RecordsPublished, m.Requests, m.CheckpointLag, m.CheckpointAdvanced,
				m.LastCycle, m.LastSuccess, m.Cadence, m.CustomerPaused} {
				v.DeletePartialMatch(only)
			}
		default:
			m.CustomerPaused.DeletePartialMatch(only)
		}
	}
	return rows.Err()
}

// pauseReason is a low-cardinality label for why a customer is paused:
// "auth" pages someone, "operator" was a decision.
func pauseReason(reason string) string {
	if strings.Contains(reason, "401") || strings.Contains(reason, "403") || strings.Contains(reason, "token") {
		return "auth"
	}
	return "operator"
}
