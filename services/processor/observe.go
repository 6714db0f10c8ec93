package processor

import (
	"time"

	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/services/processor/apply"
)

type groupKey struct{ customer, resource string }

func keyOf(m apply.Message) groupKey {
	if m.Event != nil {
		return groupKey{m.Event.GetCustomerId(), m.Event.GetResource()}
	}
	c, r := apply.SubjectParts(m.Subject)
	return groupKey{c, r}
}

// count adds the batch to the per-customer counters, one label lookup per
// (customer, resource, outcome) rather than per message.
func (w *worker) count(msgs []apply.Message, results []apply.Result) {
	type k3 struct {
		groupKey
		outcome string
	}
	counts := map[k3]int{}
	dead := map[k3]int{}
	for i, r := range results {
		k := k3{keyOf(msgs[i]), string(r.Outcome)}
		counts[k]++
		if r.Outcome == apply.DeadLettered {
			dead[k3{k.groupKey, r.Class}]++
		}
	}
	m := w.p.deps.Metrics
	for k, n := range counts {
		m.Processed.WithLabelValues(k.customer, k.resource, k.outcome).Add(float64(n))
	}
	for k, n := range dead {
		m.DeadLetters.WithLabelValues(k.customer, k.resource, k.outcome).Add(float64(n))
	}
}

// logBatch writes one line per (customer, resource) of the batch, carrying
// the trace of its first record (usually the poll cycle that published it).
func (w *worker) logBatch(msgs []apply.Message, results []apply.Result, d time.Duration, batchErr error) {
	type agg struct {
		first         int
		seen, applied int
		stale, failed int
		dead          int
		firstErr      error
	}
	groups := map[groupKey]*agg{}
	var order []groupKey
	for i, m := range msgs {
		k := keyOf(m)
		a := groups[k]
		if a == nil {
			a = &agg{first: i}
			groups[k] = a
			order = append(order, k)
		}
		a.seen++
		if results == nil {
			continue
		}
		switch r := results[i]; r.Outcome {
		case apply.Applied:
			a.applied++
		case apply.SkippedStale:
			a.stale++
		case apply.Failed:
			a.failed++
			if a.firstErr == nil {
				a.firstErr = r.Err
			}
		case apply.DeadLettered:
			a.dead++
			if a.firstErr == nil {
				a.firstErr = r.Err
			}
		}
	}
	for _, k := range order {
		a := groups[k]
		outcome, err := "success", a.firstErr
		switch {
		case batchErr != nil:
			outcome, err = "failed", batchErr
		case a.failed+a.dead == a.seen:
			outcome = "failed"
		case a.failed+a.dead > 0:
			outcome = "partial"
		}
		ev := w.log.Info()
		if outcome != "success" {
			ev = w.log.Warn()
		}
		ev = ev.Ctx(msgs[a.first].Ctx).
			Str(logging.FCustomerID, k.customer).Str(logging.FResource, k.resource).
			Str(logging.FOperation, "process").
			Int(logging.FRecordsSeen, a.seen).Int(logging.FRecordsProcessed, a.applied).
			Int("records_stale", a.stale).Int("records_failed", a.failed).Int("records_dead_lettered", a.dead).
			Int64(logging.FDurationMS, d.Milliseconds()).Str(logging.FOutcome, outcome)
		if err != nil {
			ev = ev.Str(logging.FError, err.Error())
		}
		ev.Msg("batch processed")
	}
}
