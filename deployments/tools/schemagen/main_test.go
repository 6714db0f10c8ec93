package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTighten(t *testing.T) {
	t.Parallel()
	got := tighten(schema{
		"description": "dropped",
		"type":        "object",
		"required":    []any{"name"},
		"properties": schema{
			"name":  schema{"type": "string"},
			"port":  schema{"x-kubernetes-int-or-string": true, "type": "string"},
			"extra": schema{"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": schema{}},
			"tags":  schema{"type": "object", "additionalProperties": schema{"type": "string"}, "properties": schema{}},
		},
	}).(schema)
	want := schema{
		"type":                 "object",
		"required":             []any{"name"},
		"additionalProperties": false,
		"properties": schema{
			"name":  schema{"type": "string"},
			"port":  schema{"anyOf": []any{schema{"type": "string"}, schema{"type": "integer"}}, "x-kubernetes-int-or-string": true},
			"extra": schema{"type": []any{"object", "null"}, "x-kubernetes-preserve-unknown-fields": true, "properties": schema{}},
			"tags":  schema{"type": []any{"object", "null"}, "additionalProperties": schema{"type": "string"}, "properties": schema{}},
		},
	}
	require.Equal(t, want, got)
}

func TestFileNameMatchesKubeconform(t *testing.T) {
	t.Parallel()
	for g, want := range map[gvk]string{
		{"", "v1", "Service"}:                         "service-v1.json",
		{"apps", "v1", "Deployment"}:                  "deployment-apps-v1.json",
		{"networking.k8s.io", "v1", "Ingress"}:        "ingress-networking-v1.json",
		{"keda.sh", "v1alpha1", "ScaledObject"}:       "scaledobject-keda-v1alpha1.json",
		{"monitoring.coreos.com", "v1", "PodMonitor"}: "podmonitor-monitoring-v1.json",
	} {
		require.Equal(t, want, g.fileName())
	}
}
