package poll_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/vomo"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// Under each adversarial behaviour of the simulator, the checkpoint is never
// ahead of what was published (checked after every cycle), and once cycles
// settle every record the source holds has been published in its current
// version.
func TestAdversarialSourcesLoseNothing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		faults sim.Faults
		// during runs between cycles while the fault is on.
		during func(b *bundle, rng *rand.Rand)
		// untrusted: the fault must make some walk untrusted (outcome partial).
		untrusted bool
	}{
		{name: "shared updated_at across page boundaries", faults: sim.Faults{Behaviour: sim.Behaviour{SharedUpdatedAt: 40}},
			during: func(b *bundle, _ *rand.Rand) {
				for range 45 {
					b.sim.CreateUser("acme")
				}
			}},
		{name: "mid-walk changes, id order", faults: sim.Faults{Behaviour: sim.Behaviour{MidWalk: &sim.MidWalk{Updates: 1, Inserts: 1, Deletes: 1, EveryPages: 3}}}, untrusted: true},
		{name: "mid-walk changes, updated_at order", faults: sim.Faults{Behaviour: sim.Behaviour{Order: "updated_at",
			MidWalk: &sim.MidWalk{Updates: 2, EveryPages: 2}}}, untrusted: true},
		{name: "late writes behind the clock", during: func(b *bundle, rng *rand.Rand) {
			truth, _ := b.sim.Truth("acme", "users")
			for range 5 {
				_ = b.sim.LateUpdate("acme", "users", truth[rng.IntN(len(truth))].ID, 90*time.Second)
			}
		}},
		{name: "server clock ahead", faults: sim.Faults{ClockSkew: sim.Duration(10 * time.Minute)}, during: churn},
		{name: "server clock behind", faults: sim.Faults{ClockSkew: sim.Duration(-10 * time.Minute)}, during: churn},
		{name: "429 storm with Retry-After", faults: sim.Faults{Behaviour: sim.Behaviour{Storm: &sim.Storm{For: sim.Duration(1500 * time.Millisecond)}}}},
		{name: "429 storm without Retry-After", faults: sim.Faults{Behaviour: sim.Behaviour{Storm: &sim.Storm{For: sim.Duration(time.Second), RetryAfter: "none", EmptyBody: true}}}},
		{name: "token bucket", faults: sim.Faults{Behaviour: sim.Behaviour{RateLimit: &sim.RateLimit{PerMinute: 1200, Burst: 5}}}},
		{name: "5xx mid-walk", faults: sim.Faults{Behaviour: sim.Behaviour{PageFaults: []sim.PageFault{{Page: 3, Kind: "status", Status: 503, Times: 2}}}}, during: churn},
		{name: "connection resets mid-walk", faults: sim.Faults{Behaviour: sim.Behaviour{PageFaults: []sim.PageFault{{Page: 2, Kind: "reset", Times: 2}}}}},
		{name: "truncated bodies", faults: sim.Faults{Behaviour: sim.Behaviour{PageFaults: []sim.PageFault{{Page: 4, Kind: "truncate", Times: 1}}}}},
		{name: "wire-format variance", faults: sim.Faults{Behaviour: sim.Behaviour{Wire: sim.WireFormat{StringIDs: true, TimeLayout: "mixed", IntBools: true, StringMeta: true}}}, during: churn},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 120)
			rng := rand.New(rand.NewPCG(3, 4))
			require.NoError(t, b.sim.SetFaults("acme", tc.faults))
			partial := 0
			for range 4 {
				if tc.during != nil {
					tc.during(b, rng)
				}
				res, err := b.cycleErr(b.ctx)
				if err != nil {
					var apiErr *vomo.APIError
					require.True(t, errors.As(err, &apiErr) || errors.Is(err, vomo.ErrRateLimited), "a failure is typed: %v", err)
					require.Equal(t, res.CheckpointBefore, res.CheckpointAfter, "a failed cycle never moves the checkpoint")
				}
				if res.Outcome == poll.OutcomePartial {
					partial++
					require.Equal(t, res.CheckpointBefore, res.CheckpointAfter, "an untrusted walk never moves the checkpoint")
				}
				b.requireCheckpointCovered(t)
			}
			if tc.untrusted {
				require.Positive(t, partial, "the changing walk was detected")
			}
			// Clear the fault but keep the server's clock where it was: a
			// clock jumping back would move records into its future.
			require.NoError(t, b.sim.SetFaults("acme", sim.Faults{ClockSkew: tc.faults.ClockSkew}))
			time.Sleep(1100 * time.Millisecond)
			// Settled: two clean cycles (the first may still see its window
			// start behind late writes; overlap covers them).
			for range 2 {
				res := b.cycle(t)
				require.Equal(t, poll.OutcomeSuccess, res.Outcome, res.Note)
			}
			b.requireCheckpointCovered(t)
			b.requireAllVersionsPublished(t)
		})
	}
}

func churn(b *bundle, rng *rand.Rand) {
	truth, _ := b.sim.Truth("acme", "users")
	for range 5 {
		_ = b.sim.UpdateUser("acme", truth[rng.IntN(len(truth))].ID)
	}
	b.sim.CreateUser("acme")
}

// requireAllVersionsPublished: every live record was published with its
// current updated_at.
func (b *bundle) requireAllVersionsPublished(t *testing.T) {
	t.Helper()
	published := b.streamVersions(t)
	truth, err := b.sim.Truth("acme", "users")
	require.NoError(t, err)
	for _, r := range truth {
		require.True(t, published[r.ID+"@"+r.UpdatedAt.UTC().Format(time.RFC3339)], "record %s version %s never published", r.ID, r.UpdatedAt)
	}
}
