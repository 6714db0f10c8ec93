package reconcile_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/messaging"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

func (b *testBundle) deadLetter(t *testing.T, r sim.TruthRecord, class string) {
	t.Helper()
	ev := &eventsv1.ChangeEvent{CustomerId: custID, Resource: "users", RecordId: r.ID, Operation: eventsv1.Operation_OPERATION_UPSERT,
		SourceUpdatedAt: timestamppb.New(r.UpdatedAt), Record: r.Fields, Origin: eventsv1.Origin_ORIGIN_POLL, CycleId: "c1"}
	payload, err := proto.Marshal(ev)
	require.NoError(t, err)
	b.exec(t, `INSERT INTO vomosync.dead_letters (customer_id, resource, record_id, record_updated_at, subject, payload, error, error_class, last_failed_at)
		VALUES ($1, 'users', $2, $3, $4, $5, 'failed', $6, now() - interval '2 hours')`,
		custID, r.ID, r.UpdatedAt, messaging.ChangeSubject(custID, "users"), payload, class)
}

// Dead letters outside an incremental run's window are re-driven as they
// were published once their cause (the environment) has cleared; a
// record-specific failure of the same version stays for an operator.
func TestOrphanDeadLettersRedriven(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 40})
	truth := b.deliverAll(t)
	envFailure, recordFailure := truth[5], truth[6]
	require.Less(t, envFailure.UpdatedAt, time.Now().Add(-48*time.Hour), "outside the daily window")
	require.Less(t, recordFailure.UpdatedAt, time.Now().Add(-48*time.Hour))
	b.removeFromDestination(t, envFailure, recordFailure)
	b.deadLetter(t, envFailure, "destination_config")
	b.deadLetter(t, recordFailure, "validation")

	res := b.run(t, reconcile.Request{Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeSuccess, res.Outcome, "%+v", res)
	require.Zero(t, res.Actionable(), "both are older than the window")
	require.Equal(t, 1, res.Redriven)
	pub := b.published(t)
	require.Len(t, pub, 1)
	p := pub[envFailure.ID]
	require.Equal(t, eventsv1.Origin_ORIGIN_REDRIVE, p.ev.GetOrigin())
	require.Equal(t, res.ID, p.ev.GetCycleId())
	require.JSONEq(t, string(envFailure.Fields), string(p.ev.GetRecord()))
	statuses := map[string]string{}
	rows, err := b.db.Pool.Query(b.ctx, `SELECT record_id, status FROM vomosync.dead_letters`)
	require.NoError(t, err)
	for rows.Next() {
		var id, st string
		require.NoError(t, rows.Scan(&id, &st))
		statuses[id] = st
	}
	require.Equal(t, map[string]string{envFailure.ID: "redriven", recordFailure.ID: "open"}, statuses)
}
