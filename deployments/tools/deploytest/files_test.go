package deploytest

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/vomosync/vomosync/deployments/tools/contract"
)

func readYAML(t *testing.T, rel string, v any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(raw, v), rel)
}

// TestPrometheusScrapesEveryService: the compose Prometheus discovers each
// long-running binary on its admin port and loads the mounted rules.
func TestPrometheusScrapesEveryService(t *testing.T) {
	t.Parallel()
	var cfg struct {
		Global        map[string]any `json:"global"`
		RuleFiles     []string       `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName      string `json:"job_name"`
			DNSSDConfigs []struct {
				Names           []string `json:"names"`
				Type            string   `json:"type"`
				Port            int      `json:"port"`
				RefreshInterval string   `json:"refresh_interval"`
			} `json:"dns_sd_configs"`
			StaticConfigs  []map[string]any `json:"static_configs"`
			RelabelConfigs []map[string]any `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	readYAML(t, "deployments/prometheus/prometheus.yml", &cfg)
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				scraped[n] = d.Port == contract.AdminPort
			}
		}
	}
	for _, b := range contract.Binaries {
		if !b.OneShot {
			assert.True(t, scraped[b.Name], "%s is not scraped on port %d", b.Name, contract.AdminPort)
		}
	}
	var compose struct {
		Services map[string]struct {
			Volumes []string `json:"volumes"`
		} `json:"services"`
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "docker-compose.yml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	for _, rf := range cfg.RuleFiles {
		assert.True(t, strings.HasPrefix(rf, "/etc/prometheus/rules/"), "rule file %s outside the mounted rules directory", rf)
	}
	assert.Contains(t, compose.Services["prometheus"].Volumes, "./deployments/prometheus/rules:/etc/prometheus/rules:ro")
	assert.Contains(t, compose.Services["grafana"].Volumes, "./deployments/grafana/dashboards:/var/lib/grafana/dashboards:ro")
}

// TestGrafanaProvisioning: the dashboard provider reads the mounted
// directory, and every data source a dashboard names is provisioned.
func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name      string         `json:"name"`
			UID       string         `json:"uid"`
			Type      string         `json:"type"`
			Access    string         `json:"access"`
			URL       string         `json:"url"`
			IsDefault bool           `json:"isDefault"`
			JSONData  map[string]any `json:"jsonData"`
		} `json:"datasources"`
	}
	readYAML(t, "deployments/grafana/provisioning/datasources/datasources.yaml", &ds)
	uids := map[string]string{}
	for _, d := range ds.Datasources {
		uids[d.UID] = d.Type
	}
	require.Equal(t, map[string]string{"prometheus": "prometheus", "jaeger": "jaeger"}, uids)

	var dash struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name                  string `json:"name"`
			Folder                string `json:"folder"`
			Type                  string `json:"type"`
			DisableDeletion       bool   `json:"disableDeletion"`
			AllowUIUpdates        bool   `json:"allowUiUpdates"`
			UpdateIntervalSeconds int    `json:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `json:"path"`
				FoldersFromFilesStructure bool   `json:"foldersFromFilesStructure"`
			} `json:"options"`
		} `json:"providers"`
	}
	readYAML(t, "deployments/grafana/provisioning/dashboards/dashboards.yaml", &dash)
	require.Len(t, dash.Providers, 1)
	require.Equal(t, "/var/lib/grafana/dashboards", dash.Providers[0].Options.Path)

	dir := filepath.Join(repoRoot(t), "deployments/grafana/dashboards")
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		var doc any
		require.NoError(t, json.Unmarshal(raw, &doc), path)
		for _, uid := range datasourceUIDs(doc) {
			if strings.HasPrefix(uid, "$") || strings.HasPrefix(uid, "-- ") || uid == "grafana" {
				continue // a variable or a built-in source
			}
			_, ok := uids[uid]
			assert.True(t, ok, "%s uses data source uid %q, which is not provisioned", filepath.Base(path), uid)
		}
		return nil
	})
	if !os.IsNotExist(err) {
		require.NoError(t, err)
	}
}

// datasourceUIDs collects every "datasource": {"uid": ...} in a dashboard.
func datasourceUIDs(node any) []string {
	var out []string
	switch n := node.(type) {
	case map[string]any:
		if ds, ok := n["datasource"].(map[string]any); ok {
			if uid, ok := ds["uid"].(string); ok {
				out = append(out, uid)
			}
		}
		for _, v := range n {
			out = append(out, datasourceUIDs(v)...)
		}
	case []any:
		for _, v := range n {
			out = append(out, datasourceUIDs(v)...)
		}
	}
	return out
}

// TestPrometheusAdapterServesTheHPAMetric: the adapter exposes, under the
// name the poller HPA asks for, the gauge combined with max.
func TestPrometheusAdapterServesTheHPAMetric(t *testing.T) {
	t.Parallel()
	type externalRule struct {
		SeriesQuery string `json:"seriesQuery"`
		Name        struct {
			As string `json:"as"`
		} `json:"name"`
		MetricsQuery string `json:"metricsQuery"`
	}
	var values struct {
		Rules struct {
			External []externalRule `json:"external"`
		} `json:"rules"`
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deployments/k8s/prometheus-adapter/values.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &values))
	m := render(t, "prod")
	require.Len(t, m.hpas, 1)
	want := m.hpas[0].Spec.Metrics[0].External.Metric.Name
	i := slices.IndexFunc(values.Rules.External, func(r externalRule) bool { return r.Name.As == want })
	require.GreaterOrEqual(t, i, 0, "no external rule serves %s", want)
	rule := values.Rules.External[i]
	assert.Contains(t, rule.SeriesQuery, want)
	assert.True(t, strings.HasPrefix(rule.MetricsQuery, "max "), "every poller reports the same count: max, not sum")
}
