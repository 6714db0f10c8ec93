package obscheck_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/vomosync/vomosync/deployments/obs-tools/obscheck"
)

// Paths of the files under test, from this package's directory.
const (
	rulesDir      = "../../prometheus/rules"
	dashboardsDir = "../../grafana/dashboards"
	runbookPath   = "../../../docs/runbook.md"
	runbookURL    = "https://github.com/vomosync/vomosync/blob/main/docs/runbook.md#"
)

type repoBundle struct {
	rules   []obscheck.Rule
	catalog *obscheck.Catalog
}

// setup loads every rule file and a catalog that also allows the series
// those files record.
func setup(t *testing.T) repoBundle {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(rulesDir, "*.yml"))
	require.NoError(t, err)
	yamlFiles, err := filepath.Glob(filepath.Join(rulesDir, "*.yaml"))
	require.NoError(t, err)
	files = append(files, yamlFiles...)
	require.NotEmpty(t, files, "no rule files in %s", rulesDir)
	rules, err := obscheck.LoadRules(files...)
	require.NoError(t, err)
	c, err := obscheck.Exported()
	require.NoError(t, err)
	for _, r := range rules {
		if r.Record != "" {
			c.AddRecorded(r.Record)
		}
	}
	return repoBundle{rules: rules, catalog: c}
}

func (b repoBundle) alerts() []obscheck.Rule {
	var out []obscheck.Rule
	for _, r := range b.rules {
		if r.Alert != "" {
			out = append(out, r)
		}
	}
	return out
}

func checkQuery(t *testing.T, c *obscheck.Catalog, where, expr string) {
	t.Helper()
	sels, err := obscheck.Selectors(expr)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	for _, s := range sels {
		if err := c.Check(s); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
}

func TestRulesUseExportedMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, r := range b.rules {
		checkQuery(t, b.catalog, r.File+": "+r.Alert+r.Record, r.Expr)
	}
}

func TestAlertsCarrySeverityAnnotationsAndRunbook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	anchors := runbookAnchors(t)
	alerts := b.alerts()
	require.GreaterOrEqual(t, len(alerts), 8, "issue 7 asks for at least eight alerts")
	for _, a := range alerts {
		require.Contains(t, []string{"critical", "warning"}, a.Labels["severity"], a.Alert)
		for _, k := range []string{"summary", "description", "runbook_url"} {
			require.NotEmpty(t, a.Annotations[k], "%s has no %s", a.Alert, k)
		}
		url := a.Annotations["runbook_url"]
		require.True(t, strings.HasPrefix(url, runbookURL), "%s: runbook_url %s is not in docs/runbook.md", a.Alert, url)
		anchor := strings.TrimPrefix(url, runbookURL)
		require.Equal(t, strings.ToLower(a.Alert), anchor, "%s: the anchor is the alert's own section", a.Alert)
		require.True(t, anchors[anchor], "%s: docs/runbook.md has no section #%s", a.Alert, anchor)
	}
}

// promtoolTests is the part of a promtool test file this check reads.
type promtoolTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// Every alert needs a promtool case where it fires and one where it must
// not: a rule only tested firing may fire on everything.
func TestEveryAlertHasFiringAndQuietTests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	files, err := filepath.Glob(filepath.Join(rulesDir, "tests", "*.yml"))
	require.NoError(t, err)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var pt promtoolTests
		require.NoError(t, yaml.Unmarshal(raw, &pt), f)
		for _, tc := range pt.Tests {
			for _, at := range tc.AlertRuleTest {
				if len(at.ExpAlerts) > 0 {
					fires[at.Alertname] = true
				} else {
					quiet[at.Alertname] = true
				}
			}
		}
	}
	for _, a := range b.alerts() {
		require.True(t, fires[a.Alert], "%s has no promtool test where it fires", a.Alert)
		require.True(t, quiet[a.Alert], "%s has no promtool test where it must not fire", a.Alert)
	}
}

var headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)

// runbookAnchors returns the anchors GitHub generates for the runbook's
// headings: lower case, punctuation dropped, spaces to hyphens.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(runbookPath)
	require.NoError(t, err)
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(string(raw), -1) {
		var sb strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				sb.WriteRune('-')
			case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
				sb.WriteRune(r)
			}
		}
		out[sb.String()] = true
	}
	return out
}

func TestDashboardsUseExportedMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 4, "issue 7 asks for four dashboards")
	uids := map[string]string{}
	varRE := regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
	for _, f := range files {
		d, err := obscheck.LoadDashboard(f)
		require.NoError(t, err)
		require.NotEmpty(t, d.UID, f)
		require.NotEmpty(t, d.Title, f)
		require.NotContains(t, uids, d.UID, "%s and %s share a uid", f, uids[d.UID])
		uids[d.UID] = f
		require.NotEmpty(t, d.Queries, f)
		for _, ds := range d.Datasources {
			require.Contains(t, []string{"prometheus", "jaeger", "-- Grafana --", "${datasource}"}, ds,
				"%s: datasources are referenced by the provisioned uid", f)
		}
		for _, q := range d.Queries {
			checkQuery(t, b.catalog, filepath.Base(f)+": "+q.Where, q.Expr)
			for _, m := range varRE.FindAllStringSubmatch(q.Expr, -1) {
				require.Contains(t, d.Variables, m[1], "%s: %s uses $%s, which the dashboard does not define", f, q.Where, m[1])
			}
		}
	}
}

var anchorLinkRE = regexp.MustCompile(`\]\((?:runbook\.md)?#([^)]+)\)`)

// The runbook and docs/observability.md link to runbook sections by anchor;
// a renamed heading must not leave a dead link.
func TestRunbookLinksResolve(t *testing.T) {
	t.Parallel()
	anchors := runbookAnchors(t)
	for _, doc := range []string{runbookPath, filepath.Join(filepath.Dir(runbookPath), "observability.md")} {
		raw, err := os.ReadFile(doc)
		require.NoError(t, err)
		links := anchorLinkRE.FindAllStringSubmatch(string(raw), -1)
		require.NotEmpty(t, links, doc)
		for _, m := range links {
			require.True(t, anchors[m[1]], "%s links to #%s, which docs/runbook.md does not have", doc, m[1])
		}
	}
}
