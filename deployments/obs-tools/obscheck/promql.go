package obscheck

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// Selector is one series selector of a query: the metric name and the
// label names its matchers use.
type Selector struct {
	Name   string
	Labels []string
}

var promql = parser.NewParser(parser.Options{})

// Selectors parses a PromQL expression and returns its series selectors.
// A selector without a literal metric name is an error: it could match
// anything, so it cannot be checked.
func Selectors(expr string) ([]Selector, error) {
	ast, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", expr, err)
	}
	var out []Selector
	var errs []error
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := Selector{Name: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				if s.Name == "" && m.Type.String() == "=" {
					s.Name = m.Value
				}
				continue
			}
			s.Labels = append(s.Labels, m.Name)
		}
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("selector %s in %q has no literal metric name", vs, expr))
			return nil
		}
		out = append(out, s)
		return nil
	})
	return out, errors.Join(errs...)
}

var (
	// Grafana's interval variables stand where PromQL wants a duration.
	intervalVarRE = regexp.MustCompile(`\$\{?__(rate_interval|interval|range)(_ms|_s)?\}?`)
	labelValuesRE = regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)
	queryResultRE = regexp.MustCompile(`^\s*query_result\((.*)\)\s*$`)
)

// GrafanaExpr turns a Grafana Prometheus query (panel target or template
// variable) into plain PromQL: interval variables become 5m, and
// label_values(sel, label) / query_result(expr) become their inner query.
// It returns "" for a variable query that names no metric, e.g.
// label_values(customer_id).
func GrafanaExpr(q string) string {
	q = intervalVarRE.ReplaceAllString(q, "5m")
	if m := labelValuesRE.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	if m := queryResultRE.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	if strings.HasPrefix(strings.TrimSpace(q), "label_values(") {
		return ""
	}
	return q
}
