// Package metrics declares every Prometheus metric vomosync exports. Names
// are a contract with the alert rules and dashboards in deployments/, which
// a test checks against Names().
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

const ns = "vomosync"

// Label names. customer_id is bounded by the number of customers; no record
// or trace ids are ever labels.
const (
	LCustomer = "customer_id"
	LResource = "resource"
	LOutcome  = "outcome"
	LEndpoint = "endpoint"
	LCode     = "code"
	LClass    = "class"
	LKind     = "kind"
	LReason   = "reason"
)

var (
	cr  = []string{LCustomer, LResource}
	cro = []string{LCustomer, LResource, LOutcome}
)

// Poller holds the poller's metrics.
type Poller struct {
	Cycles             *prometheus.CounterVec
	RecordsSeen        *prometheus.CounterVec
	RecordsPublished   *prometheus.CounterVec
	Requests           *prometheus.CounterVec
	CycleDuration      *prometheus.HistogramVec
	CheckpointLag      *prometheus.GaugeVec
	CheckpointAdvanced *prometheus.GaugeVec
	LastCycle          *prometheus.GaugeVec
	Cadence            *prometheus.GaugeVec
	DuePairs           prometheus.Gauge
	CustomerPaused     *prometheus.GaugeVec
	DueDelay           prometheus.Histogram
	LastSuccess        *prometheus.GaugeVec
	PublishFailures    *prometheus.CounterVec
}

// NewPoller registers the poller's metrics on reg.
func NewPoller(reg prometheus.Registerer) *Poller {
	m := &Poller{
		Cycles: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "poll_cycles_total",
			Help: "Poll cycles by outcome (success, partial, failed, interrupted)."}, cro),
		RecordsSeen: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "poll_records_seen_total",
			Help: "Records read from the VOMO API by poll cycles."}, cr),
		RecordsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "poll_records_published_total",
			Help: "Change events acknowledged by JetStream."}, cr),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "poll_requests_total",
			Help: "VOMO API requests spent by poll cycles (cost per customer and resource)."}, cr),
		CycleDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "poll_cycle_duration_seconds",
			Help: "Duration of poll cycles.", Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 12)}, []string{LResource}),
		CheckpointLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "checkpoint_lag_seconds",
			Help: "Server time minus the checkpoint, at the end of the last cycle."}, cr),
		CheckpointAdvanced: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "checkpoint_last_advance_timestamp_seconds",
			Help: "Unix time the checkpoint last moved forward."}, cr),
		LastCycle: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "poll_last_cycle_timestamp_seconds",
			Help: "Unix time the last poll cycle finished, whatever its outcome."}, cr),
		Cadence: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "poll_cadence_seconds",
			Help: "Configured polling cadence; alerts compare checkpoint staleness with it."}, cr),
		DuePairs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "poller_due_pairs",
			Help: "Customer/resource pairs due and not yet claimed (scales pollers)."}),
		CustomerPaused: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "customer_paused",
			Help: "1 when a customer is paused (bad token, operator), by reason."}, []string{LCustomer, LReason}),
		DueDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "poller_due_delay_seconds",
			Help: "Time from a pair being due to its cycle starting.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		// A quiet resource's checkpoint does not move, so "polling silent"
		// needs the last success too, not only the last advance.
		LastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "poll_last_success_timestamp_seconds",
			Help: "Unix time the last successful poll cycle finished."}, cr),
		// A full JetStream store fails every cycle the same way; the reason
		// tells the on-call which runbook step applies.
		PublishFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "publish_failures_total",
			Help: "Poll cycles that ended because JetStream did not store a publish, by reason (storage_full, unavailable, timeout, other)."}, []string{"reason"}),
	}
	reg.MustRegister(m.Cycles, m.RecordsSeen, m.RecordsPublished, m.Requests, m.CycleDuration, m.CheckpointLag,
		m.CheckpointAdvanced, m.LastCycle, m.Cadence, m.DuePairs, m.CustomerPaused, m.DueDelay, m.LastSuccess, m.PublishFailures)
	return m
}

// API holds the VOMO client's metrics (poller and reconciler).
type API struct {
	Requests        *prometheus.CounterVec
	Latency         *prometheus.HistogramVec
	ThrottleSeconds *prometheus.CounterVec
	BudgetWait      *prometheus.CounterVec
}

// NewAPI registers the VOMO API metrics on reg.
func NewAPI(reg prometheus.Registerer) *API {
	m := &API{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "vomo_requests_total",
			Help: "VOMO API requests by endpoint template and HTTP status code (0 = network error)."}, []string{LCustomer, LEndpoint, LCode}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "vomo_request_duration_seconds",
			Help: "VOMO API request latency.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}, []string{LEndpoint}),
		ThrottleSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "vomo_throttled_seconds_total",
			Help: "Time spent waiting after 429 responses."}, []string{LCustomer}),
		BudgetWait: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "vomo_budget_wait_seconds_total",
			Help: "Time spent waiting for the customer's request budget."}, []string{LCustomer}),
	}
	reg.MustRegister(m.Requests, m.Latency, m.ThrottleSeconds, m.BudgetWait)
	return m
}

// Processor holds the processor's metrics.
type Processor struct {
	Processed        *prometheus.CounterVec
	BatchSize        prometheus.Histogram
	BatchDuration    prometheus.Histogram
	ConsumerPending  prometheus.Gauge
	AckPending       prometheus.Gauge
	OldestPending    prometheus.Gauge
	DeadLetters      *prometheus.CounterVec
	DLQDepth         *prometheus.GaugeVec
	OutboxBacklog    prometheus.Gauge
	OutboxDeliveries *prometheus.CounterVec
	Panics           prometheus.Counter
}

// NewProcessor registers the processor's metrics on reg.
func NewProcessor(reg prometheus.Registerer) *Processor {
	m := &Processor{
		Processed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "processed_records_total",
			Help: "Change events processed by outcome (applied, skipped_stale, failed, dead_lettered)."}, cro),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "process_batch_size",
			Help: "Messages per processed batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		BatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "process_batch_duration_seconds",
			Help: "Time to write and commit one batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		ConsumerPending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "consumer_pending_messages",
			Help: "Messages in the stream not yet delivered to the processor consumer."}),
		AckPending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "consumer_ack_pending_messages",
			Help: "Messages delivered and not yet acknowledged."}),
		OldestPending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "consumer_oldest_pending_age_seconds",
			Help: "Age of the oldest message not yet acknowledged (0 when caught up)."}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "dead_letters_total",
			Help: "Events sent to the dead-letter queue, by reason class."}, []string{LCustomer, LResource, LReason}),
		DLQDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "dlq_depth",
			Help: "Open dead letters per customer."}, []string{LCustomer}),
		OutboxBacklog: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "outbox_backlog",
			Help: "Side effects waiting in the outbox."}),
		OutboxDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "outbox_deliveries_total",
			Help: "Outbox delivery attempts by outcome (delivered, retry, dead_lettered)."}, []string{LOutcome}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "processor_panics_total",
			Help: "Panics recovered while handling a batch."}),
	}
	reg.MustRegister(m.Processed, m.BatchSize, m.BatchDuration, m.ConsumerPending, m.AckPending, m.OldestPending,
		m.DeadLetters, m.DLQDepth, m.OutboxBacklog, m.OutboxDeliveries, m.Panics)
	return m
}

// Reconciler holds the reconciler's metrics.
type Reconciler struct {
	Runs          *prometheus.CounterVec
	Expected      *prometheus.CounterVec
	Gaps          *prometheus.CounterVec
	GapRatio      *prometheus.GaugeVec
	LastRun       *prometheus.GaugeVec
	LastRunOK     *prometheus.GaugeVec
	HeldRepairs   *prometheus.GaugeVec
	Repairs       *prometheus.CounterVec
	DriftChecked  *prometheus.CounterVec
	DriftFound    *prometheus.CounterVec
	DriftRatio    *prometheus.GaugeVec
	RunDuration   *prometheus.HistogramVec
	RedrivenDLQ   *prometheus.CounterVec
	UntrustedRuns *prometheus.CounterVec
	Requests      *prometheus.CounterVec
	Pending       *prometheus.GaugeVec
}

// NewReconciler registers the reconciler's metrics on reg.
func NewReconciler(reg prometheus.Registerer) *Reconciler {
	m := &Reconciler{
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "recon_runs_total",
			Help: "Reconciliation runs by kind and outcome (success, held, untrusted, failed)."}, []string{LCustomer, LResource, LKind, LOutcome}),
		Expected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "recon_expected_records_total",
			Help: "Records compared by reconciliation runs (the gap-rate denominator)."}, cr),
		Gaps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "recon_gaps_total",
			Help: "Gaps found by class (missing, stale, deleted, field_drift, destination_drift, untrusted_walk)."}, []string{LCustomer, LResource, LClass}),
		GapRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "recon_gap_ratio",
			Help: "Gaps over expected records in the last run."}, cr),
		LastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "recon_last_run_timestamp_seconds",
			Help: "Unix time the last reconciliation run finished."}, []string{LCustomer, LResource, LKind}),
		LastRunOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "recon_last_run_success",
			Help: "1 when the last run succeeded, 0 when it was held, untrusted or failed."}, cr),
		HeldRepairs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "recon_held_repairs",
			Help: "Gaps whose repair is held for an operator (gap rate over threshold or persisting)."}, cr),
		Repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "recon_repairs_total",
			Help: "Repair events published by class."}, []string{LCustomer, LResource, LClass}),
		DriftChecked: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "field_drift_checked_total",
			Help: "Records sampled for field-by-field comparison."}, cr),
		DriftFound: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "field_drift_found_total",
			Help: "Sampled records whose fields differ from the destination."}, cr),
		DriftRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "field_drift_ratio",
			Help: "Share of sampled records with field drift in the last run."}, cr),
		RunDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "recon_run_duration_seconds",
			Help: "Duration of reconciliation runs.", Buckets: prometheus.ExponentialBuckets(0.1, 3, 10)}, []string{LKind}),
		RedrivenDLQ: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "recon_redriven_dead_letters_total",
			Help: "Dead letters re-driven by reconciliation after their cause cleared."}, cr),
		UntrustedRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "recon_untrusted_walks_total",
			Help: "Runs whose source walk could not be trusted (no deletions inferred)."}, cr),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "recon_requests_total",
			Help: "VOMO API requests spent by reconciliation runs (walk, deletion confirmations, drift samples)."}, cr),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "recon_pending_records",
			Help: "Source records newer than the poller's checkpoint in the last run (not yet due at the destination)."}, cr),
	}
	reg.MustRegister(m.Runs, m.Expected, m.Gaps, m.GapRatio, m.LastRun, m.LastRunOK, m.HeldRepairs, m.Repairs,
		m.DriftChecked, m.DriftFound, m.DriftRatio, m.RunDuration, m.RedrivenDLQ, m.UntrustedRuns, m.Requests, m.Pending)
	return m
}
