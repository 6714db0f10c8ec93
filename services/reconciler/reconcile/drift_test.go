package reconcile_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
)

// A field changed at the source without updated_at moving: polling never
// sees it; the full run's field comparison does, and repairs it.
func TestSilentChangeIsFieldDrift(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 60, settings: settingsThreshold(0.5)})
	truth := b.deliverAll(t)
	silent := truth[12]
	require.NoError(t, b.sim.SilentUpdate(custID, "users", silent.ID))

	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeSuccess, res.Outcome)
	require.Equal(t, map[string]int{"field_drift": 1}, res.Gaps)
	g := b.gapsByRecord(t, res.ID)[silent.ID]
	require.Equal(t, reconcile.CauseSilentChange, g.Cause)
	require.Regexp(t, `listed record differs .* in: [a-z_, ]+$`, g.Detail)
	require.True(t, silent.UpdatedAt.Equal(*g.SourceUpdatedAt))
	require.True(t, g.Repaired)

	p := b.published(t)[silent.ID]
	require.Equal(t, eventsv1.Origin_ORIGIN_RECONCILE, p.ev.GetOrigin())
	require.Equal(t, silent.UpdatedAt.Add(time.Microsecond), p.ev.GetSourceUpdatedAt().AsTime(),
		"same version, new fields: stamped a microsecond later so last-writer-wins applies it")
	now, err := b.sim.Truth(custID, "users")
	require.NoError(t, err)
	for _, r := range now {
		if r.ID == silent.ID {
			require.JSONEq(t, string(r.Fields), string(p.ev.GetRecord()))
		}
	}
}

// The detail sample catches fields a list serves stale: detail differs from
// what was delivered with the same updated_at.
func TestDetailSampleFindsDrift(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 30, settings: customer.Settings{Reconcile: customer.Reconcile{GapThreshold: 0.5, SampleSize: 100}}})
	truth := b.deliverAll(t)
	target := truth[4]
	b.tamperDetail(func(id string, body []byte) []byte {
		if id != target.ID {
			return body
		}
		return bytes.Replace(body, []byte(`"email":"`), []byte(`"email":"changed.`), 1)
	})

	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeReport})
	require.Equal(t, 30, res.DriftChecked, "every matching record sampled")
	require.Equal(t, 1, res.DriftFound)
	g := b.gapsByRecord(t, res.ID)[target.ID]
	require.Equal(t, reconcile.ClassFieldDrift, g.Class)
	require.Contains(t, g.Detail, "detail record")
	require.Contains(t, g.Detail, "email")
}

func TestFieldComparisonIgnoresWireVariants(t *testing.T) {
	t.Parallel()
	base := `{"id":8205,"email":"a@b.c","active":true,"updated_at":"2025-11-19T10:15:00+00:00"}`
	for _, tc := range []struct {
		name, other string
		diffs       []string
	}{
		{"same", base, nil},
		{"string id, micro time, int bool", `{"id":"8205","email":"a@b.c","active":1,"updated_at":"2025-11-19T10:15:00.000000Z"}`, nil},
		{"plain time", `{"id":8205,"email":"a@b.c","active":true,"updated_at":"2025-11-19 10:15:00"}`, nil},
		{"detail adds fields", `{"id":8205,"email":"a@b.c","active":true,"updated_at":"2025-11-19T10:15:00+00:00","participations":[]}`, nil},
		{"changed email", `{"id":8205,"email":"x@b.c","active":true,"updated_at":"2025-11-19T10:15:00+00:00"}`, []string{"email"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			diffs, moved, err := reconcile.CompareFields(json.RawMessage(base), json.RawMessage(tc.other))
			require.NoError(t, err)
			require.False(t, moved)
			require.Equal(t, tc.diffs, diffs)
		})
	}
	_, moved, err := reconcile.CompareFields(json.RawMessage(base), json.RawMessage(`{"id":8205,"updated_at":"2025-11-20T00:00:00Z"}`))
	require.NoError(t, err)
	require.True(t, moved, "a newer updated_at is a normal change, not drift")
}
