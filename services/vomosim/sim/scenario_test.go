package sim_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/vomosim/sim"
)

func TestDemoScenario(t *testing.T) {
	t.Parallel()
	sc, err := sim.LoadScenario("../scenarios/demo.yaml")
	require.NoError(t, err)
	require.Len(t, sc.Customers, 3)
	require.Equal(t, sim.Duration(90*time.Second), sc.Customers[1].Faults.ClockSkew)
	s := sim.New(sc.Options())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, s.Apply(ctx, sc))
	n, err := s.Count("globex", sim.Users)
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 6000)

	_, err = sim.ParseScenario([]byte("customers:\n  - id: x\n    tokn: y\n"))
	require.Error(t, err, "unknown keys are rejected")
}

func TestEveryScenarioApplies(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob("../scenarios/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(paths), 4)
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			sc, err := sim.LoadScenario(p)
			require.NoError(t, err)
			if testing.Short() && filepath.Base(p) == "million.yaml" {
				t.Skip("a million users take a second to build")
			}
			s := sim.New(sc.Options())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			require.NoError(t, s.Apply(ctx, sc))
			require.Len(t, s.Customers(), len(sc.Customers))
		})
	}
}
