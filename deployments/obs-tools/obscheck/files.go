package obscheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
)

// Rule is one recording or alerting rule of a rule file.
type Rule struct {
	File, Group   string
	Record, Alert string
	Expr          string
	Labels        map[string]string
	Annotations   map[string]string
}

// LoadRules parses rule files the way Prometheus does (strict fields,
// valid PromQL).
func LoadRules(paths ...string) ([]Rule, error) {
	var out []Rule
	for _, p := range paths {
		rgs, errs := rulefmt.ParseFile(p, false, model.LegacyValidation, promql, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		for _, g := range rgs.Groups {
			for _, r := range g.Rules {
				out = append(out, Rule{File: p, Group: g.Name, Record: r.Record, Alert: r.Alert, Expr: r.Expr,
					Labels: r.Labels, Annotations: r.Annotations})
			}
		}
	}
	return out, nil
}

// Dashboard is what the checks need of a Grafana dashboard JSON file.
type Dashboard struct {
	File, UID, Title string
	Queries          []Query
	Variables        []string
	// Datasources lists the uid of every datasource reference; a reference
	// by name (a plain string) is listed as "name:<string>".
	Datasources []string
}

// Query is one PromQL query of a dashboard, with where it was found.
type Query struct {
	Where string
	Expr  string
}

// LoadDashboard reads a dashboard and collects its panel target
// expressions (nested rows included), its query variables and its
// datasource references.
func LoadDashboard(path string) (Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Dashboard{}, fmt.Errorf("read dashboard: %w", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return Dashboard{}, fmt.Errorf("%s: %w", path, err)
	}
	d := Dashboard{File: path}
	d.UID, _ = raw["uid"].(string)
	d.Title, _ = raw["title"].(string)
	if tpl, ok := raw["templating"].(map[string]any); ok {
		list, _ := tpl["list"].([]any)
		for _, v := range list {
			vm, _ := v.(map[string]any)
			name, _ := vm["name"].(string)
			d.Variables = append(d.Variables, name)
			if vm["type"] != "query" {
				continue
			}
			q, _ := vm["query"].(string)
			if qm, ok := vm["query"].(map[string]any); ok {
				q, _ = qm["query"].(string)
			}
			if e := GrafanaExpr(q); e != "" {
				d.Queries = append(d.Queries, Query{Where: "variable " + name, Expr: e})
			}
		}
	}
	d.walk(raw, d.Title)
	return d, nil
}

// walk visits panels and their targets, recording expressions and
// datasource references.
func (d *Dashboard) walk(v any, where string) {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["title"].(string); ok && t != "" {
			where = d.Title + " / " + t
		}
		for k, val := range x {
			switch k {
			case "datasource":
				switch ds := val.(type) {
				case map[string]any:
					uid, _ := ds["uid"].(string)
					d.Datasources = append(d.Datasources, uid)
				case string:
					d.Datasources = append(d.Datasources, "name:"+ds)
				}
			case "expr":
				if e, ok := val.(string); ok {
					d.Queries = append(d.Queries, Query{Where: where, Expr: GrafanaExpr(e)})
				}
			}
			d.walk(val, where)
		}
	case []any:
		for _, e := range x {
			d.walk(e, where)
		}
	}
}
