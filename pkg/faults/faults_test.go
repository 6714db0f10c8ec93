package faults_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/faults"
)

func TestParseSpec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec string
		want map[string]float64
		err  string
	}{
		{spec: "", want: map[string]float64{}},
		{spec: "poller.after_fetch=0.05, poller.checkpoint_tx=1,reconciler.mid_repair=0",
			want: map[string]float64{"poller.after_fetch": 0.05, "poller.checkpoint_tx": 1, "reconciler.mid_repair": 0}},
		{spec: "poller.after_fech=0.05", err: `unknown point "poller.after_fech"`},
		{spec: "poller.after_fetch", err: "want point=probability"},
		{spec: "poller.after_fetch=1.5", err: "want a probability in [0, 1]"},
		{spec: "poller.after_fetch=-0.1", err: "want a probability in [0, 1]"},
		{spec: "poller.after_fetch=often", err: "want a probability in [0, 1]"},
		{spec: "poller.after_fetch=0.1,poller.after_fetch=0.2", err: "given twice"},
	} {
		got, err := faults.ParseSpec(tc.spec)
		if tc.err != "" {
			require.ErrorIs(t, err, faults.ErrConfig, tc.spec)
			require.ErrorContains(t, err, tc.err, tc.spec)
			require.ErrorContains(t, err, "VOMOSYNC_FAULTS", tc.spec)
			continue
		}
		require.NoError(t, err, tc.spec)
		require.Equal(t, tc.want, got, tc.spec)
	}
}

func TestSetup(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := zerolog.New(&buf)

	inj, now, err := faults.Settings{}.Setup(log)
	require.NoError(t, err)
	require.Nil(t, inj, "unset: no injector")
	require.Empty(t, buf.String(), "unset: nothing logged")
	require.WithinDuration(t, time.Now(), now(), time.Second)
	inj.Point(faults.PollerAfterFetch) // a nil injector is a no-op

	inj, now, err = faults.Settings{Spec: "poller.after_fetch=0.5", Seed: "7", ClockSkew: -90 * time.Second}.Setup(log)
	require.NoError(t, err)
	require.Equal(t, "poller.after_fetch=0.5", inj.String())
	require.Contains(t, buf.String(), "FAULT INJECTION ENABLED")
	require.Contains(t, buf.String(), "CLOCK SKEW INJECTED")
	require.InDelta(t, -90*time.Second, now().Sub(time.Now()), float64(time.Second))

	_, _, err = faults.Settings{Spec: "poller.after_fetch=0.5", Seed: "x"}.Setup(log)
	require.ErrorContains(t, err, "VOMOSYNC_FAULT_SEED")
	inj, _, err = faults.Settings{Seed: "x"}.Setup(log)
	require.NoError(t, err, "a seed without faults is ignored")
	require.Nil(t, inj)
	_, _, err = faults.Settings{Spec: "nope=1"}.Setup(log)
	require.True(t, errors.Is(err, faults.ErrConfig))
}

func TestFireIsSeededAndHonoursProbabilities(t *testing.T) {
	t.Parallel()
	probs := map[string]float64{faults.PollerAfterFetch: 0.3, faults.PollerAfterPublish: 1, faults.PollerCheckpointTx: 0}
	draw := func(seed uint64) []bool {
		inj := faults.New(probs, seed)
		out := make([]bool, 10000)
		for i := range out {
			out[i] = inj.Fire(faults.PollerAfterFetch)
		}
		return out
	}
	a, b := draw(42), draw(42)
	require.Equal(t, a, b, "same seed, same decisions")
	require.NotEqual(t, a, draw(43))
	fired := 0
	for _, f := range a {
		if f {
			fired++
		}
	}
	require.InDelta(t, 3000, fired, 300, "about 30%% of 10,000 arrivals")

	inj := faults.New(probs, 1)
	for range 100 {
		require.True(t, inj.Fire(faults.PollerAfterPublish))
		require.False(t, inj.Fire(faults.PollerCheckpointTx))
		require.False(t, inj.Fire(faults.ReconcilerMidRepair), "not configured")
	}
}

// TestPointKillsTheProcess re-executes the test binary as a child that
// reaches a point with probability 1, and checks the child died of SIGKILL
// without running its deferred functions or the code after the point.
func TestPointKillsTheProcess(t *testing.T) {
	t.Parallel()
	if os.Getenv("FAULTS_TEST_CHILD") != "" {
		return // the child runs TestKillChild only
	}
	marker := filepath.Join(t.TempDir(), "marker")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1") // #nosec G204 -- the test binary itself
	cmd.Env = append(os.Environ(), "FAULTS_TEST_CHILD="+marker)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "child output: %s", out)
	ws, ok := ee.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	require.True(t, ws.Signaled(), "child output: %s", out)
	require.Equal(t, syscall.SIGKILL, ws.Signal())
	require.Contains(t, string(out), "before the point")
	require.NotContains(t, string(out), "after the point")
	_, err = os.Stat(marker)
	require.True(t, os.IsNotExist(err), "a deferred function ran")
}

func TestKillChild(t *testing.T) {
	marker := os.Getenv("FAULTS_TEST_CHILD")
	if marker == "" {
		t.Skip("runs only as the child of TestPointKillsTheProcess")
	}
	defer func() { _ = os.WriteFile(marker, []byte("deferred"), 0o600) }()
	inj, _, err := faults.Settings{Spec: faults.PollerCheckpointTx + "=1"}.Setup(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("before the point\n")
	inj.Point(faults.PollerCheckpointTx)
	os.Stdout.WriteString("after the point\n")
}

func BenchmarkPointUnset(b *testing.B) {
	var inj *faults.Injector
	for b.Loop() {
		inj.Point(faults.PollerAfterFetch)
	}
}

func BenchmarkPointConfigured(b *testing.B) {
	inj := faults.New(map[string]float64{faults.PollerAfterFetch: 0}, 1)
	for b.Loop() {
		inj.Point(faults.PollerAfterFetch)
	}
}

func TestWithActionReplacesTheKill(t *testing.T) {
	t.Parallel()
	var got []string
	inj := faults.New(map[string]float64{faults.ReconcilerMidRepair: 1}, 1).WithAction(func(p string) { got = append(got, p) })
	inj.Point(faults.ReconcilerMidRepair)
	inj.Point(faults.PollerAfterFetch)
	require.Equal(t, []string{faults.ReconcilerMidRepair}, got)
}
