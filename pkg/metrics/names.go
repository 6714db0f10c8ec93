package metrics

import (
	"regexp"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists every metric name the services export (histograms add
// _bucket, _sum and _count), for the dashboard and alert-rule checks.
func Names() []string {
	reg := prometheus.NewRegistry()
	NewPoller(reg)
	NewAPI(reg)
	NewProcessor(reg)
	NewReconciler(reg)
	ch := make(chan *prometheus.Desc, 256)
	go func() {
		for _, c := range collectors(reg) {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []string
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out
}

func collectors(reg *prometheus.Registry) []prometheus.Collector { return []prometheus.Collector{reg} }
