package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// TestCheckCatchesBrokenStacks breaks the real docker-compose.yml one way at
// a time and requires the check to name the problem.
func TestCheckCatchesBrokenStacks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(p *types.Project)
		want   string
	}{
		{"service without healthcheck", func(p *types.Project) {
			s := p.Services["poller"]
			s.HealthCheck = nil
			p.Services["poller"] = s
		}, "poller: needs healthcheck"},
		{"healthy condition on a service without healthcheck", func(p *types.Project) {
			s := p.Services["prometheus"]
			s.HealthCheck = nil
			p.Services["prometheus"] = s
		}, "grafana: depends on prometheus being healthy"},
		{"service not waiting for the migration", func(p *types.Project) {
			s := p.Services["processor"]
			s.DependsOn["migrate"] = types.ServiceDependency{Condition: types.ServiceConditionStarted}
			p.Services["processor"] = s
		}, "processor: must wait for migrate"},
		{"missing contract variable", func(p *types.Project) {
			delete(p.Services["poller"].Environment, "POLLER_LEASE")
		}, "poller: environment POLLER_LEASE is not set"},
		{"unpinned image", func(p *types.Project) {
			s := p.Services["nats"]
			s.Image = "nats:latest"
			p.Services["nats"] = s
		}, `nats: image "nats:latest"`},
		{"missing service", func(p *types.Project) {
			delete(p.Services, "reconciler")
		}, "service reconciler is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := load(filepath.Join("..", "..", "..", "docker-compose.yml"))
			require.NoError(t, err)
			tc.mutate(p)
			var found []string
			for _, e := range check(p) {
				found = append(found, e.Error())
			}
			require.True(t, strings.Contains(strings.Join(found, "\n"), tc.want), "want %q among:\n%s", tc.want, strings.Join(found, "\n"))
		})
	}
}
