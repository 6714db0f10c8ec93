package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/vomo"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
)

// rewriter lets a test tamper with list pages between the simulator and the client.
type rewriter struct {
	// page is called with each list page's number and body; it returns the body to deliver.
	page func(n int, body []byte) []byte
	// detail, when set, does the same for detail reads.
	detail func(id string, body []byte) []byte
}

func (rw rewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	id, isDetail := strings.CutPrefix(req.URL.Path, "/v1/users/")
	switch {
	case req.URL.Path == "/v1/users" && rw.page != nil:
	case isDetail && rw.detail != nil:
	default:
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if isDetail {
		body = rw.detail(id, body)
	} else {
		n, _ := strconv.Atoi(req.URL.Query().Get("page"))
		body = rw.page(max(n, 1), body)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

func (b *testBundle) tamper(fn func(n int, body []byte) []byte) {
	b.rec.ClientOptions = append(b.rec.ClientOptions, vomo.WithHTTPClient(&http.Client{Transport: rewriter{page: fn}}))
}

func (b *testBundle) tamperDetail(fn func(id string, body []byte) []byte) {
	b.rec.ClientOptions = append(b.rec.ClientOptions, vomo.WithHTTPClient(&http.Client{Transport: rewriter{detail: fn}}))
}

func editPage(t *testing.T, body []byte, fn func(p map[string]any)) []byte {
	t.Helper()
	var p map[string]any
	require.NoError(t, json.Unmarshal(body, &p))
	fn(p)
	out, err := json.Marshal(p)
	require.NoError(t, err)
	return out
}

// A skipped page: the records on it must not look deleted, the run is
// untrusted, and what the walk did see is still compared and repaired.
func TestSkippedPageInfersNoDeletion(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 60, settings: settingsThreshold(0.5)})
	truth := b.deliverAll(t)
	b.removeFromDestination(t, truth[2])
	b.tamper(func(n int, body []byte) []byte {
		if n != 2 {
			return body
		}
		return bytes.ReplaceAll(body, []byte("page=3"), []byte("page=4"))
	})

	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeUntrusted, res.Outcome)
	require.False(t, res.Trusted)
	require.Contains(t, res.Untrusted, "page")
	require.Equal(t, map[string]int{"missing": 1, "untrusted_walk": 1}, res.Gaps)
	require.Equal(t, 1, res.Causes[reconcile.CauseWalkProblem])
	require.Zero(t, res.Gaps[reconcile.ClassDeleted])
	require.Equal(t, 1, res.Repaired, "the missing record seen on page 1 is still repaired")
	pub := b.published(t)
	require.Len(t, pub, 1)
	require.Contains(t, pub, truth[2].ID)
}

// A 401 midway stops the walk: untrusted, the error says why, no deletions.
func TestUnauthorizedMidwayIsUntrusted(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 60})
	truth := b.deliverAll(t)
	require.NoError(t, b.sim.DeleteUser(custID, truth[55].ID))
	b.tamper(func(n int, body []byte) []byte {
		if n == 2 {
			require.NoError(t, b.sim.RevokeToken(custID))
		}
		return body
	})

	res, err := b.rec.Run(b.ctx, reconcile.Request{Customer: custID, Resource: "users", Full: true, Mode: reconcile.ModeRepair})
	require.ErrorIs(t, err, reconcile.ErrUntrustedWalk)
	require.ErrorIs(t, err, vomo.ErrUnauthorized)
	require.Equal(t, reconcile.OutcomeUntrusted, res.Outcome)
	require.Zero(t, res.Gaps[reconcile.ClassDeleted])
	require.Equal(t, 1, res.Gaps[reconcile.ClassUntrustedWalk])
	runs, err := reconcile.ListRuns(b.ctx, b.db.Pool, reconcile.RunFilter{Customer: custID})
	require.NoError(t, err)
	require.Equal(t, reconcile.OutcomeUntrusted, runs[0].Outcome)
	require.Contains(t, runs[0].Error, "401")
}

// A walk that looks complete but silently lost a record (the total shrank
// with it): the detail read finds the record alive, so no deletion is
// inferred from a walk that cannot be trusted after all.
func TestDeletionCandidateConfirmedBeforeInferring(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 45})
	truth := b.deliverAll(t)
	hidden := truth[40] // on the last page, so from/to stay consistent
	var hid atomic.Bool
	b.tamper(func(n int, body []byte) []byte {
		return editPage(t, body, func(p map[string]any) {
			meta := p["meta"].(map[string]any)
			meta["total"] = meta["total"].(float64) - 1
			var keep []any
			for _, r := range p["data"].([]any) {
				if id := r.(map[string]any)["id"]; strconv.FormatFloat(id.(float64), 'f', -1, 64) == hidden.ID {
					hid.Store(true)
					continue
				}
				keep = append(keep, r)
			}
			if len(keep) < len(p["data"].([]any)) {
				meta["to"] = meta["to"].(float64) - 1
			}
			p["data"] = keep
		})
	})

	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.True(t, hid.Load())
	require.Equal(t, reconcile.OutcomeUntrusted, res.Outcome)
	require.Contains(t, res.Untrusted, hidden.ID)
	require.Zero(t, res.Gaps[reconcile.ClassDeleted])
	require.Empty(t, b.published(t))
}

// A run cancelled midway (shutdown, lease lost) stops its comparison, is
// recorded as interrupted, and infers nothing.
func TestCancelledRunIsInterrupted(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 90})
	truth := b.deliverAll(t)
	require.NoError(t, b.sim.DeleteUser(custID, truth[80].ID))
	b.rec.BatchSize = 5
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	b.tamper(func(n int, body []byte) []byte {
		if n == 3 {
			cancel()
		}
		return body
	})
	res, err := b.rec.Run(ctx, reconcile.Request{Customer: custID, Resource: "users", Full: true, Mode: reconcile.ModeRepair})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, reconcile.OutcomeInterrupted, res.Outcome)
	require.Zero(t, res.Gaps[reconcile.ClassDeleted])
	runs, err := reconcile.ListRuns(b.ctx, b.db.Pool, reconcile.RunFilter{Customer: custID})
	require.NoError(t, err)
	require.Equal(t, reconcile.OutcomeInterrupted, runs[0].Outcome)
	require.Empty(t, b.published(t))
}

// A run cancelled with a cause (the scheduler's stall watchdog) fails with
// that cause on record, instead of passing for an interruption; a run
// reports progress through Request.Alive while it walks.
func TestRunCancelledWithCauseFails(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 90})
	b.deliverAll(t)
	b.rec.BatchSize = 5
	stalled := errors.New("stalled: no progress for 30m")
	ctx, cancel := context.WithCancelCause(b.ctx)
	defer cancel(nil)
	b.tamper(func(n int, body []byte) []byte {
		if n == 3 {
			cancel(stalled)
		}
		return body
	})
	beats := 0
	res, err := b.rec.Run(ctx, reconcile.Request{Customer: custID, Resource: "users", Full: true, Mode: reconcile.ModeRepair,
		Alive: func() { beats++ }})
	require.ErrorIs(t, err, stalled)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, reconcile.OutcomeFailed, res.Outcome)
	require.Positive(t, beats, "pages walked before the cancel report progress")
	runs, err := reconcile.ListRuns(b.ctx, b.db.Pool, reconcile.RunFilter{Customer: custID})
	require.NoError(t, err)
	require.Equal(t, reconcile.OutcomeFailed, runs[0].Outcome)
	require.Contains(t, runs[0].Error, "stalled")
	require.Empty(t, b.published(t))
}
