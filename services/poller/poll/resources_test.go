package poll_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/apiclient"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

func (b *bundle) cycleOf(t *testing.T, resource string) *poll.Result {
	t.Helper()
	cust, err := b.store.Get(b.ctx, "acme")
	require.NoError(t, err)
	tok, err := b.store.Token(b.ctx, "acme")
	require.NoError(t, err)
	cl, err := apiclient.New(b.pool, cust, tok, nil)
	require.NoError(t, err)
	res, err := b.cycler.Run(b.ctx, poll.Request{Customer: cust, Resource: resource, Source: cl, Sink: poll.NewJetStreamSink(b.js)})
	require.NoError(t, err)
	require.Equal(t, poll.OutcomeSuccess, res.Outcome, res.Note)
	return res
}

func setupRich(t *testing.T) *bundle {
	t.Helper()
	b := setup(t, 0)
	require.NoError(t, b.sim.AddCustomer(sim.CustomerSpec{ID: "rich", Token: "tok-rich", Users: 60, Projects: 12, Forms: 3, Completions: 70}))
	_, err := b.pool.Exec(b.ctx, `UPDATE vomosync.customers SET api_base_url = $1 WHERE id = 'acme'`, b.url+"/v1")
	require.NoError(t, err)
	require.NoError(t, b.store.SetToken(b.ctx, "acme", "tok-rich"))
	require.NoError(t, b.store.SetSettings(b.ctx, "acme", []string{"users", "form_completions", "participations", "projects", "groups", "campaigns", "certificates"},
		customer.Settings{Settle: customer.Duration(time.Millisecond), BudgetPerMinute: -1}))
	b.cycler.ParticipationRecent = 5 * 365 * 24 * time.Hour
	b.cycler.ParticipationUpcoming = 5 * 365 * 24 * time.Hour
	return b
}

// Form completions are walked form by form; every completion is published.
func TestFormCompletionsAcrossForms(t *testing.T) {
	t.Parallel()
	b := setupRich(t)
	res := b.cycleOf(t, "form_completions")
	truth, err := b.sim.Truth("rich", sim.Completions)
	require.NoError(t, err)
	require.Len(t, truth, 70)
	require.Equal(t, 70, res.RecordsPublished)
	for _, r := range []string{"projects", "groups", "campaigns", "certificates"} {
		b.cycleOf(t, r)
	}
}

// Participations never advance updated_at: they are derived from project
// dates, published when added or changed, deleted when gone.
func TestParticipationsDerivedFromDates(t *testing.T) {
	t.Parallel()
	b := setupRich(t)
	first := b.cycleOf(t, "participations")
	require.Positive(t, first.RecordsPublished, "participants of the dates are published")
	again := b.cycleOf(t, "participations")
	require.Zero(t, again.RecordsPublished, "nothing changed, nothing published")
	var n int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM vomosync.participation_state WHERE customer_id = 'acme'`).Scan(&n))
	require.Equal(t, first.RecordsPublished, n)

	// A detail-only change (new participants, check-ins) on every project.
	truth, err := b.sim.Truth("rich", sim.Projects)
	require.NoError(t, err)
	for _, p := range truth {
		require.NoError(t, b.sim.TouchDetail("rich", sim.Projects, p.ID))
	}
	changed := b.cycleOf(t, "participations")
	require.Positive(t, changed.RecordsPublished, "changed participants are published")
}
