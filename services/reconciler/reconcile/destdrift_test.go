package reconcile_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

const corrupt = `UPDATE vomo_dest.users SET record = record || '{"email":"corrupted@example.invalid"}'
	WHERE customer_id = $1 AND external_id = 'vomo-' || $2`

// Destination rows changed behind vomosync's back (sync_state untouched) are
// found by a full run as destination_drift, exactly as many as planted, and
// repaired: sync_state and the row are set a microsecond before the version,
// and the delivered record is republished at its version.
func TestPlantedCorruptionIsDestinationDrift(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 80, settings: settingsThreshold(0.5)})
	truth := b.deliverAll(t)
	planted := []sim.TruthRecord{truth[3], truth[17], truth[41], truth[66]}
	for _, r := range planted[:3] {
		b.exec(t, corrupt, custID, r.ID)
	}
	b.exec(t, `DELETE FROM vomo_dest.users WHERE customer_id = $1 AND external_id = 'vomo-' || $2`, custID, planted[3].ID)

	report := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeReport})
	require.Equal(t, reconcile.OutcomeSuccess, report.Outcome, "%+v", report)
	require.Equal(t, map[string]int{reconcile.ClassDestinationDrift: 4}, report.Gaps)
	require.Equal(t, map[string]int{reconcile.CauseDestinationDiffers: 4}, report.Causes)
	require.Zero(t, b.count(t, `SELECT count(*) FROM vomosync.sync_state WHERE source_updated_at <> date_trunc('second', source_updated_at)`),
		"a report changes nothing")

	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeSuccess, res.Outcome, "%+v", res)
	require.Equal(t, map[string]int{reconcile.ClassDestinationDrift: 4}, res.Gaps)
	require.Equal(t, 4, res.Repaired)
	gaps := b.gapsByRecord(t, res.ID)
	require.Contains(t, gaps[planted[0].ID].Detail, "differs from the one delivered")
	require.Contains(t, gaps[planted[3].ID].Detail, "row is missing")

	pub := b.published(t)
	require.Len(t, pub, 4)
	for _, r := range planted {
		p := pub[r.ID]
		require.NotNil(t, p.ev, r.ID)
		require.Equal(t, eventsv1.Operation_OPERATION_UPSERT, p.ev.GetOperation())
		require.Equal(t, eventsv1.Origin_ORIGIN_RECONCILE, p.ev.GetOrigin())
		require.True(t, r.UpdatedAt.Equal(p.ev.GetSourceUpdatedAt().AsTime()), "republished at its own version")
		require.JSONEq(t, string(r.Fields), string(p.ev.GetRecord()))
		require.True(t, strings.Contains(p.msgID, res.ID), "run-unique message id %q", p.msgID)

		// Invalidated: both guards let the republished version through,
		// and the state row keeps its record (no first sighting).
		var at time.Time
		var hasRecord bool
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT source_updated_at, record IS NOT NULL FROM vomosync.sync_state
			WHERE customer_id = $1 AND record_id = $2`, custID, r.ID).Scan(&at, &hasRecord))
		require.True(t, r.UpdatedAt.Add(-time.Microsecond).Equal(at), "%s: %s", r.ID, at)
		require.True(t, hasRecord)
	}
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM vomo_dest.users WHERE customer_id = $1
		AND source_updated_at <> date_trunc('second', source_updated_at)`, custID))
	require.Equal(t, 4, b.count(t, `SELECT count(*) FROM vomosync.sync_state WHERE customer_id = $1
		AND source_updated_at <> date_trunc('second', source_updated_at)`, custID), "exactly the drifted records")
}

// Deleted records: a hard-deleting destination still holding the row, and
// a soft-deleting one whose row is not marked deleted.
func TestDeletedRecordStillInDestination(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"soft", "hard"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			st := settingsThreshold(0.5)
			st.Destination = customer.Destination{DeleteMode: mode}
			b := setup(t, setupOpts{users: 30, settings: st})
			truth := b.deliverAll(t)
			gone := truth[9]
			require.NoError(t, b.sim.DeleteUser(custID, gone.ID))
			// The deletion was delivered (sync_state) and the live row put
			// back behind vomosync's back.
			b.exec(t, `UPDATE vomosync.sync_state SET deleted = true WHERE customer_id = $1 AND record_id = $2`, custID, gone.ID)

			res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
			require.Equal(t, reconcile.OutcomeSuccess, res.Outcome, "%+v", res)
			require.Equal(t, map[string]int{reconcile.ClassDestinationDrift: 1}, res.Gaps)
			p := b.published(t)[gone.ID]
			require.Equal(t, eventsv1.Operation_OPERATION_DELETE, p.ev.GetOperation())
			require.True(t, gone.UpdatedAt.Equal(p.ev.GetSourceUpdatedAt().AsTime()))
		})
	}
}

// Through the real processor: the planted rows end equal to the source, no
// first_seen effect, and the next run finds nothing.
func TestPlantedCorruptionRepairedThroughProcessor(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 40, settings: customer.Settings{Settle: customer.Duration(time.Millisecond),
		Reconcile: customer.Reconcile{GapThreshold: 0.5},
		Actions:   []customer.Action{{Name: "welcome", On: "first_seen", Resource: sim.Users, URL: "https://hooks.example.com/welcome"}}}})
	b.startProcessor(t)
	b.pollOnce(t, "")
	waitFor(t, "the backfill applied", func() bool {
		return b.count(t, `SELECT count(*) FROM vomosync.sync_state WHERE customer_id = $1`, custID) == 40
	})
	truth, err := b.sim.Truth(custID, sim.Users)
	require.NoError(t, err)
	planted := []sim.TruthRecord{truth[2], truth[11], truth[29]}
	for _, r := range planted {
		b.exec(t, corrupt, custID, r.ID)
	}
	require.Equal(t, 40, b.count(t, `SELECT count(*) FROM vomosync.outbox WHERE customer_id = $1`, custID))

	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeSuccess, res.Outcome, "%+v", res)
	require.Equal(t, map[string]int{reconcile.ClassDestinationDrift: len(planted)}, res.Gaps)
	require.Equal(t, len(planted), res.Repaired)
	waitFor(t, "the repairs applied", func() bool {
		return b.count(t, `SELECT count(*) FROM vomosync.audit_log WHERE customer_id = $1 AND origin = 'reconcile' AND outcome = 'applied'`, custID) == len(planted)
	})

	for _, r := range planted {
		var rec json.RawMessage
		var at time.Time
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT record, source_updated_at FROM vomo_dest.users
			WHERE customer_id = $1 AND external_id = 'vomo-' || $2`, custID, r.ID).Scan(&rec, &at))
		require.JSONEq(t, string(r.Fields), string(rec), r.ID)
		require.True(t, r.UpdatedAt.Equal(at), r.ID)
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM vomosync.sync_state WHERE customer_id = $1 AND record_id = $2 AND source_updated_at = $3`,
			custID, r.ID, r.UpdatedAt))
	}
	require.Equal(t, 40, b.count(t, `SELECT count(*) FROM vomosync.outbox WHERE customer_id = $1`, custID),
		"a repair is not a first sighting")
	again := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeReport})
	require.Zero(t, again.Actionable(), "repairs stuck: %+v", again.Gaps)
}
