package reconcile

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/logging"
)

// observe logs the run's one structured line and updates the metrics.
func (r *Reconciler) observe(ctx context.Context, res *RunResult) {
	var ev *zerolog.Event
	switch res.Outcome {
	case OutcomeSuccess:
		ev = r.Log.Info()
	case OutcomeFailed:
		ev = r.Log.Error()
	default:
		ev = r.Log.Warn()
	}
	gaps := zerolog.Dict()
	for k, v := range res.Gaps {
		gaps.Int(k, v)
	}
	causes := zerolog.Dict()
	for k, v := range res.Causes {
		causes.Int(k, v)
	}
	ev.Ctx(ctx).Str(logging.FCustomerID, res.CustomerID).Str(logging.FResource, res.Resource).
		Str(logging.FOperation, "reconcile_"+res.Kind).Str(logging.FCycleID, res.ID).Str("mode", res.Mode).
		Time(logging.FCheckpointBefore, res.Horizon).Time(logging.FCheckpointAfter, res.Horizon).
		Int(logging.FRecordsSeen, res.SourceRecords).Int(logging.FRecordsProcessed, res.Repaired).
		Int("expected", res.Expected).Int("compared", res.Compared).Int("pending", res.Pending).
		Dict("gaps", gaps).Dict("causes", causes).Float64("gap_rate", res.GapRate).
		Int("redriven", res.Redriven).Bool("held", res.Held).Str("held_reason", res.HeldReason).
		Bool("trusted", res.Trusted).Str("untrusted_reason", res.Untrusted).Int("requests", res.Requests).
		Int64(logging.FDurationMS, res.Duration.Milliseconds()).Str(logging.FOutcome, res.Outcome).
		Str(logging.FError, res.Error).Str("note", res.Note).Msg("reconcile run")
	if r.Metrics == nil || res.Mode == ModeDryRun {
		return
	}
	m, c, rs := r.Metrics, res.CustomerID, res.Resource
	m.Runs.WithLabelValues(c, rs, res.Kind, res.Outcome).Inc()
	m.RunDuration.WithLabelValues(res.Kind).Observe(res.Duration.Seconds())
	m.Requests.WithLabelValues(c, rs).Add(float64(res.Requests))
	m.LastRun.WithLabelValues(c, rs, res.Kind).SetToCurrentTime()
	if res.Outcome == OutcomeInterrupted || res.Outcome == OutcomeFailed && res.Expected == 0 {
		m.LastRunOK.WithLabelValues(c, rs).Set(0)
		return
	}
	m.Expected.WithLabelValues(c, rs).Add(float64(res.Expected))
	for _, class := range []string{ClassMissing, ClassStale, ClassDeleted, ClassFieldDrift, ClassDestinationDrift, ClassUntrustedWalk} {
		m.Gaps.WithLabelValues(c, rs, class).Add(float64(res.Gaps[class]))
	}
	m.GapRatio.WithLabelValues(c, rs).Set(res.GapRate)
	m.Pending.WithLabelValues(c, rs).Set(float64(res.Pending))
	m.DriftChecked.WithLabelValues(c, rs).Add(float64(res.DriftChecked))
	m.DriftFound.WithLabelValues(c, rs).Add(float64(res.DriftFound))
	if res.DriftChecked > 0 {
		m.DriftRatio.WithLabelValues(c, rs).Set(float64(res.DriftFound) / float64(res.DriftChecked))
	}
	held := 0
	if res.Held {
		held = res.Actionable()
	}
	m.HeldRepairs.WithLabelValues(c, rs).Set(float64(held))
	ok := 0.0
	if res.Outcome == OutcomeSuccess {
		ok = 1
	}
	m.LastRunOK.WithLabelValues(c, rs).Set(ok)
	if !res.Trusted {
		m.UntrustedRuns.WithLabelValues(c, rs).Inc()
	}
}
