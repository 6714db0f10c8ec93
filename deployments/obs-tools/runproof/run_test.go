package runproof_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/deployments/obs-tools/obscheck"
	"github.com/vomosync/vomosync/pkg/logging"
)

// run is what one pipeline run leaves behind for the checks.
type run struct {
	s       *stack
	logs    map[string][]string // service -> log lines
	exposed map[string]bool     // metric families the running services exposed
}

// TestObservedRun syncs one customer through the real poller, processor and
// reconciler with traces going to a real Jaeger, forces one gap for the
// reconciler to repair, stops the services (flushing their spans) and then
// checks the traces and the log lines against the database.
func TestObservedRun(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.start("processor")
	s.start("poller")
	s.eventually("every user synced", 2*time.Minute, func() (bool, string) {
		n := s.count(`SELECT count(*) FROM vomosync.sync_state WHERE customer_id = 'proof' AND resource = 'users'`)
		return n == users, fmt.Sprintf("%d of %d", n, users)
	})

	// A change VOMO makes without moving updated_at: polling cannot see it,
	// the full reconciliation finds it (field drift) and publishes a repair
	// under the run's trace.
	var changed string
	require.NoError(t, s.db.Pool.QueryRow(s.ctx, `SELECT min(record_id) FROM vomosync.sync_state WHERE customer_id = 'proof'`).Scan(&changed))
	s.post(s.simURL + "/admin/customers/proof/users/" + changed + "/silent")
	s.start("reconciler")
	_, err := s.db.Pool.Exec(s.ctx, `UPDATE vomosync.schedules SET next_run_at = now() WHERE customer_id = 'proof' AND kind = 'reconcile_full'`)
	require.NoError(t, err)
	s.eventually("the reconciler's repair is applied", 2*time.Minute, func() (bool, string) {
		n := s.count(`SELECT count(*) FROM vomosync.audit_log WHERE customer_id = 'proof' AND record_id = '` + changed +
			`' AND origin = 'reconcile' AND outcome = 'applied'`)
		runs := s.count(`SELECT count(*) FROM vomosync.recon_runs WHERE customer_id = 'proof' AND outcome <> 'running'`)
		return n == 1 && runs > 0, fmt.Sprintf("repair applied: %d, finished runs: %d", n, runs)
	})

	exposed := map[string]bool{}
	for _, svc := range []string{"poller", "reconciler", "processor"} {
		maps.Copy(exposed, s.metricNames(svc))
	}
	r := run{s: s, logs: map[string][]string{}, exposed: exposed}
	for _, svc := range []string{"poller", "reconciler", "processor"} {
		r.logs[svc] = s.stop(svc)
	}
	t.Run("one trace holds the poller's publish and the processor's write of a record", r.checkPollTrace)
	t.Run("the reconciliation run's trace holds its repair publish", r.checkReconcileTrace)
	t.Run("poll cycle log lines match poll_cycles", r.checkPollLogs)
	t.Run("process log lines match audit_log", r.checkProcessLogs)
	t.Run("reconcile log lines match recon_runs", r.checkReconcileLogs)
	t.Run("the services expose the metrics the alerts read", r.checkExposed)
	t.Run("no token or bearer header in any trace or log line", r.checkNoSecrets)
}

func (s *stack) count(q string) int {
	var n int
	require.NoError(s.t, s.db.Pool.QueryRow(s.ctx, q).Scan(&n))
	return n
}

// jaegerTrace is the part of Jaeger's /api/traces/{id} answer the checks read.
type jaegerTrace struct {
	Spans []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// span is one span of a trace, flattened.
type span struct {
	id, op, service string
	parents         []string
	tags            map[string]string
}

// trace reads a trace from Jaeger's query API, polling while the collector
// batches.
func (r run) trace(t *testing.T, traceID string, ready func([]span) bool) []span {
	t.Helper()
	var spans []span
	r.s.eventually("trace "+traceID+" in Jaeger", 30*time.Second, func() (bool, string) {
		var body struct {
			Data []jaegerTrace `json:"data"`
		}
		code, err := getJSON(r.s.jaeger+"/api/traces/"+traceID, &body)
		if err != nil || code != 200 || len(body.Data) == 0 {
			return false, fmt.Sprintf("status %d, err %v", code, err)
		}
		spans = spans[:0]
		for _, sp := range body.Data[0].Spans {
			f := span{id: sp.SpanID, op: sp.OperationName, service: body.Data[0].Processes[sp.ProcessID].ServiceName, tags: map[string]string{}}
			for _, ref := range sp.References {
				if ref.RefType == "CHILD_OF" {
					f.parents = append(f.parents, ref.SpanID)
				}
			}
			for _, tg := range sp.Tags {
				f.tags[tg.Key] = fmt.Sprint(tg.Value)
			}
			spans = append(spans, f)
		}
		return ready(spans), fmt.Sprintf("%d spans", len(spans))
	})
	return spans
}

func find(spans []span, match func(span) bool) (span, bool) {
	for _, s := range spans {
		if match(s) {
			return s, true
		}
	}
	return span{}, false
}

// checkPollTrace follows an operator's path: record id -> its audit row ->
// the trace id -> the trace in Jaeger, which must hold the cycle, the API
// request, the publish of that record and the processor's write of it, the
// write a child of the publish (the context crossed JetStream in headers).
func (r run) checkPollTrace(t *testing.T) {
	var record, traceID, cycleID string
	require.NoError(t, r.s.db.Pool.QueryRow(r.s.ctx, `SELECT record_id, trace_id, cycle_id FROM vomosync.audit_log
		WHERE customer_id = 'proof' AND resource = 'users' AND outcome = 'applied' AND origin IN ('poll', 'backfill') AND trace_id <> ''
		ORDER BY id LIMIT 1`).Scan(&record, &traceID, &cycleID))
	var cycleTrace string
	require.NoError(t, r.s.db.Pool.QueryRow(r.s.ctx, `SELECT trace_id FROM vomosync.poll_cycles WHERE id::text = $1`, cycleID).Scan(&cycleTrace))
	require.Equal(t, cycleTrace, traceID, "the audit row carries its poll cycle's trace id")

	isPublish := func(s span) bool {
		return s.service == "poller" && s.op == "publish users" && s.tags["vomosync.record_id"] == record
	}
	isWrite := func(s span) bool {
		return s.service == "processor" && s.op == "process users" && s.tags["vomosync.record_id"] == record
	}
	spans := r.trace(t, traceID, func(sp []span) bool {
		_, p := find(sp, isPublish)
		_, w := find(sp, isWrite)
		return p && w
	})
	pub, _ := find(spans, isPublish)
	write, _ := find(spans, isWrite)
	require.Contains(t, write.parents, pub.id, "the processor's span is a child of the poller's publish span")
	require.Equal(t, "proof", write.tags["vomosync.customer_id"])
	require.Equal(t, "applied", write.tags["vomosync.outcome"])

	root, ok := find(spans, func(s span) bool { return s.service == "poller" && s.op == "poll users" })
	require.True(t, ok, "the poll cycle's root span")
	require.Equal(t, "proof", root.tags["vomosync.customer_id"])
	require.Equal(t, "users", root.tags["vomosync.resource"])
	require.Equal(t, cycleID, root.tags["vomosync.cycle_id"])
	_, ok = find(spans, func(s span) bool { return s.service == "poller" && strings.HasPrefix(s.op, "GET ") })
	require.True(t, ok, "the VOMO API request span")
}

// checkReconcileTrace: the run's root span and the publish of its repair.
func (r run) checkReconcileTrace(t *testing.T) {
	var traceID, runID string
	require.NoError(t, r.s.db.Pool.QueryRow(r.s.ctx, `SELECT trace_id, id::text FROM vomosync.recon_runs
		WHERE customer_id = 'proof' AND repaired > 0 ORDER BY started_at LIMIT 1`).Scan(&traceID, &runID))
	spans := r.trace(t, traceID, func(sp []span) bool {
		_, ok := find(sp, func(s span) bool { return s.service == "reconciler" && s.op == "publish users" })
		return ok
	})
	root, ok := find(spans, func(s span) bool { return s.service == "reconciler" && s.op == "reconcile users" })
	require.True(t, ok, "the run's root span")
	require.Equal(t, runID, root.tags["vomosync.run_id"])
	require.Equal(t, "proof", root.tags["vomosync.customer_id"])
}

// entries parses a service's JSON log lines with the given message.
func (r run) entries(t *testing.T, service, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range r.logs[service] {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			continue // not a JSON line (e.g. a Go runtime message)
		}
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	require.NotEmpty(t, out, "no %q lines in the %s log", msg, service)
	return out
}

// operationFields are the fields issue 7 requires on every poll, process and
// reconcile line.
var operationFields = []string{
	logging.FCustomerID, logging.FResource, logging.FOperation, logging.FCheckpointBefore, logging.FCheckpointAfter,
	logging.FRecordsSeen, logging.FRecordsProcessed, logging.FDurationMS, logging.FOutcome, logging.FError, logging.FTraceID,
}

// requireFields fails on a missing field, except those listed in missingOK
// (fields a service does not log yet); an exception no longer needed fails
// too, so the list only shrinks.
func requireFields(t *testing.T, service string, lines []map[string]any, missingOK ...string) {
	t.Helper()
	stillMissing := map[string]bool{}
	for _, l := range lines {
		for _, f := range operationFields {
			if _, ok := l[f]; ok {
				continue
			}
			if strings.Contains(" "+strings.Join(missingOK, " ")+" ", " "+f+" ") {
				stillMissing[f] = true
				continue
			}
			t.Errorf("%s line without %s: %v", service, f, l)
		}
	}
	for _, f := range missingOK {
		require.True(t, stillMissing[f], "%s now logs %s: remove it from the exceptions", service, f)
	}
}

func num(v any) int64 { f, _ := v.(float64); return int64(f) }

func str(v any) string { s, _ := v.(string); return s }

// logTime parses a zerolog time field.
func logTime(t *testing.T, v any) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, str(v))
	require.NoError(t, err, "time field %v", v)
	return ts
}

// sameSecond compares a logged time with a database one. zerolog's default
// time format has whole seconds.
func sameSecond(t *testing.T, logged any, db time.Time, what string) {
	t.Helper()
	require.Equal(t, db.UTC().Truncate(time.Second), logTime(t, logged).UTC().Truncate(time.Second), what)
}

func (r run) checkPollLogs(t *testing.T) {
	lines := r.entries(t, "poller", "poll cycle")
	requireFields(t, "poller", lines)
	for _, l := range lines {
		var (
			traceID, outcome, errText string
			before, after             *time.Time
			seen, published           int
			duration                  *int64
		)
		require.NoError(t, r.s.db.Pool.QueryRow(r.s.ctx, `SELECT trace_id, outcome, error, checkpoint_before, checkpoint_after,
			records_seen, records_published, duration_ms FROM vomosync.poll_cycles WHERE id::text = $1`, str(l[logging.FCycleID])).
			Scan(&traceID, &outcome, &errText, &before, &after, &seen, &published, &duration), "cycle %v", l[logging.FCycleID])
		require.Equal(t, traceID, l[logging.FTraceID])
		require.Equal(t, "proof", l[logging.FCustomerID])
		require.Equal(t, "users", l[logging.FResource])
		require.Equal(t, outcome, l[logging.FOutcome])
		require.Equal(t, errText, l[logging.FError])
		require.EqualValues(t, seen, num(l[logging.FRecordsSeen]))
		require.EqualValues(t, published, num(l[logging.FRecordsProcessed]))
		require.NotNil(t, duration)
		require.Equal(t, *duration, num(l[logging.FDurationMS]))
		require.NotNil(t, before)
		sameSecond(t, l[logging.FCheckpointBefore], *before, "checkpoint_before")
		if after != nil {
			sameSecond(t, l[logging.FCheckpointAfter], *after, "checkpoint_after")
		}
	}
}

func (r run) checkProcessLogs(t *testing.T) {
	lines := r.entries(t, "processor", "batch processed")
	// The processor does not log checkpoint_before/after (a batch has no
	// checkpoint; the records' updated_at range would do) nor an empty error.
	requireFields(t, "processor", lines, logging.FCheckpointBefore, logging.FCheckpointAfter, logging.FError)
	var seen, applied int64
	traces := map[string]bool{}
	rows, err := r.s.db.Pool.Query(r.s.ctx, `SELECT DISTINCT trace_id FROM vomosync.audit_log WHERE customer_id = 'proof'`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		traces[id] = true
	}
	require.NoError(t, rows.Err())
	for _, l := range lines {
		require.Equal(t, "process", l[logging.FOperation])
		require.Equal(t, "proof", l[logging.FCustomerID])
		require.True(t, traces[str(l[logging.FTraceID])], "a batch line's trace id is one of its audit rows': %v", l)
		seen += num(l[logging.FRecordsSeen])
		applied += num(l[logging.FRecordsProcessed])
	}
	require.EqualValues(t, r.s.count(`SELECT count(*) FROM vomosync.audit_log WHERE customer_id = 'proof'`), seen,
		"records_seen over all batch lines = audit rows")
	require.EqualValues(t, r.s.count(`SELECT count(*) FROM vomosync.audit_log WHERE customer_id = 'proof' AND outcome = 'applied'`), applied,
		"records_processed over all batch lines = applied audit rows")
}

func (r run) checkReconcileLogs(t *testing.T) {
	lines := r.entries(t, "reconciler", "reconcile run")
	requireFields(t, "reconciler", lines)
	for _, l := range lines {
		var (
			traceID, outcome, errText string
			source, repaired          int
			duration                  *int64
		)
		require.NoError(t, r.s.db.Pool.QueryRow(r.s.ctx, `SELECT trace_id, outcome, error, source_records, repaired, duration_ms
			FROM vomosync.recon_runs WHERE id::text = $1`, str(l[logging.FCycleID])).
			Scan(&traceID, &outcome, &errText, &source, &repaired, &duration), "run %v", l[logging.FCycleID])
		require.Equal(t, traceID, l[logging.FTraceID])
		require.Equal(t, "reconcile_full", l[logging.FOperation])
		require.Equal(t, outcome, l[logging.FOutcome])
		require.Equal(t, errText, l[logging.FError])
		require.EqualValues(t, source, num(l[logging.FRecordsSeen]))
		require.EqualValues(t, repaired, num(l[logging.FRecordsProcessed]))
		require.NotNil(t, duration)
		require.Equal(t, *duration, num(l[logging.FDurationMS]))
	}
}

// notExercised are metrics the alerts read that this run has no reason to
// set: a Vec exposes a family only once a label set is used.
var notExercised = map[string]string{
	"vomosync_customer_paused":    "no customer is paused (bad token) in this run",
	"vomosync_dead_letters_total": "nothing is dead-lettered in this run",
	// A gap to close in the processor: exporting 0 for every active customer
	// would give VomosyncDLQGrowing its day-ago value from the start.
	"vomosync_dlq_depth": "the processor exports a customer's depth only once it had an open dead letter",
}

// checkExposed scrapes the running services: pkg/metrics only declares
// names, this shows the services really export what the alert rules read.
func (r run) checkExposed(t *testing.T) {
	files, err := filepath.Glob("../../prometheus/rules/*.yml")
	require.NoError(t, err)
	rules, err := obscheck.LoadRules(files...)
	require.NoError(t, err)
	read := map[string]bool{}
	for _, rule := range rules {
		sels, err := obscheck.Selectors(rule.Expr)
		require.NoError(t, err)
		for _, sel := range sels {
			if strings.HasPrefix(sel.Name, "vomosync_") {
				read[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(sel.Name, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	var missing []string
	for name := range read {
		family := strings.TrimSuffix(name, "_total")
		if !r.exposed[name] && !r.exposed[family] && notExercised[name] == "" {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "read by alert rules but exposed by no running service")
	for name, why := range notExercised {
		require.False(t, r.exposed[name], "%s is exposed now (%s no longer holds): remove it from notExercised", name, why)
	}
}

// checkNoSecrets reads every trace Jaeger holds for every service, and every
// log line (written at debug level), and finds neither the customer's token
// nor an Authorization value: redaction holds in traces as well as logs.
func (r run) checkNoSecrets(t *testing.T) {
	var services struct {
		Data []string `json:"data"`
	}
	code, err := getJSON(r.s.jaeger+"/api/services", &services)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.NotEmpty(t, services.Data)
	for _, svc := range services.Data {
		var traces json.RawMessage
		code, err := getJSON(r.s.jaeger+"/api/traces?limit=100000&lookback=2h&service="+svc, &traces)
		require.NoError(t, err)
		require.Equal(t, 200, code, svc)
		require.NotContains(t, string(traces), "tok-proof", "token in a %s trace", svc)
		require.NotContains(t, string(traces), "Bearer ", "authorization value in a %s trace", svc)
	}
	for svc, lines := range r.logs {
		all := strings.Join(lines, "\n")
		require.NotContains(t, all, "tok-proof", "token in %s logs", svc)
		require.NotContains(t, all, "Bearer ", "authorization value in %s logs", svc)
	}
}
