package obscheck_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/deployments/obs-tools/obscheck"
)

// Synthetic values of each label: two of everything that rules join or
// aggregate on, so a missing `by`, a one-sided `on` or a duplicate label
// set shows up as an error or an empty result.
var labelValues = map[string][]string{
	"customer_id": {"c1", "c2", "c3"},
	"resource":    {"users", "projects"},
	"outcome":     {"success", "failed", "applied", "dead_lettered"},
	"code":        {"200", "429", "503"},
	"class":       {"missing", "field_drift", "untrusted_walk"},
	"kind":        {"incremental", "full"},
	"reason":      {"auth", "permanent"},
	"endpoint":    {"/users"},
	"le":          {"0.5", "+Inf"},
	"alertname":   {"VomosyncPollingSilent"},
	"alertstate":  {"firing"},
	"severity":    {"critical", "warning"},
}

// replicas are two scrape targets exporting every series, as two replicas do.
var replicas = []labels.Labels{
	labels.FromStrings("job", "vomosync", "instance", "a:8081", "service", "poller"),
	labels.FromStrings("job", "vomosync", "instance", "b:8081", "service", "processor"),
}

const (
	evalStep  = time.Minute
	evalSteps = 130
)

var evalAt = time.Unix(0, 0).Add(120 * time.Minute)

// value is a plausible sample of a metric at step i.
func value(name string, i int) float64 {
	switch {
	case strings.HasSuffix(name, "_total"), strings.HasSuffix(name, "_count"), strings.HasSuffix(name, "_sum"),
		strings.HasSuffix(name, "_bucket"):
		return float64(i)
	case strings.HasSuffix(name, "_timestamp_seconds"):
		return float64(i) * evalStep.Seconds()
	}
	return 1
}

// combos expands label names into every combination of their values.
func combos(names []string) []labels.Labels {
	out := []labels.Labels{labels.EmptyLabels()}
	for _, n := range names {
		vals := labelValues[n]
		var next []labels.Labels
		for _, base := range out {
			for _, v := range vals {
				b := labels.NewBuilder(base)
				b.Set(n, v)
				next = append(next, b.Labels())
			}
		}
		out = next
	}
	return out
}

type evalBundle struct {
	repoBundle
	store  *teststorage.TestStorage
	engine *promql.Engine
}

// setupEval loads two hours of synthetic samples of every exported metric,
// then evaluates every recording rule over them in file order and stores
// its results, as Prometheus would.
func setupEval(t *testing.T) evalBundle {
	t.Helper()
	b := evalBundle{repoBundle: setup(t), store: teststorage.New(t)}
	b.engine = promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute})
	t.Cleanup(func() { _ = b.engine.Close() })

	app := b.store.Appender(context.Background())
	for _, name := range b.catalog.Names() {
		own, ok := b.catalog.Labels(name)
		if !ok {
			continue // a recorded series: added below
		}
		for _, set := range combos(own) {
			for _, rep := range replicas {
				lb := labels.NewBuilder(set)
				rep.Range(func(l labels.Label) { lb.Set(l.Name, l.Value) })
				lb.Set(labels.MetricName, name)
				ls := lb.Labels()
				for i := range evalSteps {
					_, err := app.Append(0, ls, time.Unix(0, 0).Add(time.Duration(i)*evalStep).UnixMilli(), value(name, i))
					require.NoError(t, err)
				}
			}
		}
	}
	require.NoError(t, app.Commit())

	for _, r := range b.rules {
		if r.Record == "" {
			continue
		}
		q, err := b.engine.NewRangeQuery(context.Background(), b.store, nil, r.Expr, time.Unix(0, 0), evalAt, evalStep)
		require.NoError(t, err, r.Record)
		res := q.Exec(context.Background())
		require.NoError(t, res.Err, r.Record)
		m, err := res.Matrix()
		require.NoError(t, err, r.Record)
		require.NotEmpty(t, m, "recording rule %s records nothing from data with every metric present", r.Record)
		app := b.store.Appender(context.Background())
		for _, s := range m {
			ls := labels.NewBuilder(s.Metric).Set(labels.MetricName, r.Record).Labels()
			for _, p := range s.Floats {
				_, err := app.Append(0, ls, p.T, p.F)
				require.NoError(t, err)
			}
		}
		require.NoError(t, app.Commit())
		q.Close()
	}
	return b
}

func (b evalBundle) instant(t *testing.T, expr string) (promql.Vector, error) {
	t.Helper()
	q, err := b.engine.NewInstantQuery(context.Background(), b.store, nil, expr, evalAt)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		return nil, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		return v, nil
	case promql.Scalar:
		return promql.Vector{{F: v.V}}, nil
	}
	return nil, nil
}

// Parsing is not enough: a rule or a panel can parse and still fail at
// evaluation (many-to-many matching, duplicate label sets) or match nothing
// (an `on` naming a label one side lacks). Every alert must evaluate; every
// dashboard query must evaluate and return data when every metric has data.
func TestQueriesEvaluate(t *testing.T) {
	t.Parallel()
	b := setupEval(t)
	for _, r := range b.alerts() {
		_, err := b.instant(t, r.Expr)
		require.NoError(t, err, "alert %s", r.Alert)
	}
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	require.NoError(t, err)
	varRE := regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?`)
	for _, f := range files {
		d, err := obscheck.LoadDashboard(f)
		require.NoError(t, err)
		for _, q := range d.Queries {
			expr := varRE.ReplaceAllStringFunc(q.Expr, func(m string) string {
				name := varRE.FindStringSubmatch(m)[1]
				return labelValues[name][0]
			})
			v, err := b.instant(t, expr)
			require.NoError(t, err, "%s: %s", filepath.Base(f), q.Where)
			require.NotEmpty(t, v, "%s: %s returns nothing: %s", filepath.Base(f), q.Where, expr)
		}
	}
}
