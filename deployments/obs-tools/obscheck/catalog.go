// Package obscheck checks that the alert rules and dashboards in deployments/
// refer only to metrics the services export (pkg/metrics), with labels
// those metrics carry, so a renamed metric breaks a test, not an alert.
package obscheck

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vomosync/vomosync/pkg/metrics"
)

// anyLabels marks a metric whose labels are not checked (recorded series,
// runtime metrics of the client library).
var anyLabels = map[string]bool(nil)

// targetLabels are added by scraping (compose job config, PodMonitor).
var targetLabels = []string{"job", "instance", "service", "namespace", "pod", "container", "endpoint"}

// Catalog maps every metric name a query may use to the label names it
// carries.
type Catalog struct {
	labels map[string]map[string]bool
	// declared holds the metric names as pkg/metrics declares them
	// (histograms by their base name).
	declared map[string]bool
	// own holds each metric's own labels, without the scrape's.
	own map[string][]string
}

var descRE = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}\}$`)

// Exported builds the catalog of the metrics pkg/metrics declares, plus
// the series every Prometheus has (up, ALERTS) and runtime metrics
// (go_*, process_*). It fails when pkg/metrics.Names() lists a metric the
// catalog did not find, i.e. a constructor added there but not here.
func Exported() (*Catalog, error) {
	c := &Catalog{labels: map[string]map[string]bool{}, declared: map[string]bool{}, own: map[string][]string{}}
	reg := prometheus.NewRegistry()
	for _, set := range []any{metrics.NewPoller(reg), metrics.NewAPI(reg), metrics.NewProcessor(reg), metrics.NewReconciler(reg)} {
		if err := c.addStruct(set); err != nil {
			return nil, err
		}
	}
	for _, n := range metrics.Names() {
		if !c.declared[n] {
			return nil, fmt.Errorf("pkg/metrics exports %s, which obscheck.Exported does not construct: add its constructor", n)
		}
	}
	c.add("up", nil)
	c.add("ALERTS", []string{"alertname", "alertstate", "severity", "customer_id", "resource", "reason"})
	c.add("ALERTS_FOR_STATE", []string{"alertname", "severity", "customer_id", "resource", "reason"})
	return c, nil
}

var (
	histogramType    = reflect.TypeFor[prometheus.Histogram]()
	histogramVecType = reflect.TypeFor[*prometheus.HistogramVec]()
)

// addStruct adds every collector field of a pkg/metrics struct; histogram
// fields also add their _bucket, _sum and _count series.
func (c *Catalog) addStruct(set any) error {
	v := reflect.ValueOf(set).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		col, ok := f.Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		ch := make(chan *prometheus.Desc, 1)
		go func() { col.Describe(ch); close(ch) }()
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				return fmt.Errorf("unexpected metric description %s", d)
			}
			name, lbls := m[1], splitLabels(m[2])
			c.declared[name] = true
			t := v.Type().Field(i).Type
			if t == histogramType || t == histogramVecType {
				c.add(name+"_bucket", append(slices.Clone(lbls), "le"))
				c.add(name+"_sum", lbls)
				c.add(name+"_count", lbls)
				continue
			}
			c.add(name, lbls)
		}
	}
	return nil
}

func splitLabels(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func (c *Catalog) add(name string, lbls []string) {
	set := map[string]bool{"__name__": true}
	for _, l := range append(lbls, targetLabels...) {
		set[l] = true
	}
	c.labels[name] = set
	c.own[name] = lbls
}

// Labels returns a metric's own label names (not those scraping adds), and
// whether the catalog knows the metric with its labels.
func (c *Catalog) Labels(name string) ([]string, bool) {
	l, ok := c.own[name]
	return l, ok
}

// AddRecorded allows a series recorded by a rule; its labels are not checked.
func (c *Catalog) AddRecorded(name string) { c.labels[name] = anyLabels }

// Names lists the catalog, sorted.
func (c *Catalog) Names() []string {
	out := make([]string, 0, len(c.labels))
	for n := range c.labels {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Check returns an error naming a metric the services do not export, or a
// label the metric does not carry.
func (c *Catalog) Check(s Selector) error {
	lbls, ok := c.labels[s.Name]
	if !ok && (strings.HasPrefix(s.Name, "go_") || strings.HasPrefix(s.Name, "process_")) {
		return nil
	}
	if !ok {
		return fmt.Errorf("metric %s is not exported by any service (pkg/metrics)", s.Name)
	}
	if lbls == nil {
		return nil
	}
	for _, l := range s.Labels {
		if !lbls[l] {
			return fmt.Errorf("metric %s has no label %q", s.Name, l)
		}
	}
	return nil
}
