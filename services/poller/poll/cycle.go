// Package poll runs one poll cycle of one customer's resource: walk the VOMO
// list from the checkpoint, publish every record version, wait for JetStream
// to acknowledge all of them, then advance the checkpoint in the same
// transaction as the cycle's record. It is importable so that syncctl replay
// can run the same logic against a dry-run sink.
package poll

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/checkpoint"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/faults"
	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/vomo"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

const tracerName = "github.com/vomosync/vomosync/services/poller/poll"

// Outcomes of a cycle, as recorded and counted.
const (
	OutcomeSuccess     = "success"
	OutcomePartial     = "partial"
	OutcomeFailed      = "failed"
	OutcomeInterrupted = "interrupted"
)

// ErrHeld means the checkpoint is missing and the customer's strategy is to
// wait for an operator.
var ErrHeld = errors.New("checkpoint missing: held for an operator (syncctl checkpoint restore|set)")

// Source is what a cycle needs of the VOMO API.
type Source interface {
	Walk(ctx context.Context, path string, q url.Values, fn func(context.Context, vomo.Page) error) (vomo.WalkResult, error)
}

// Cycler runs cycles. One Cycler serves every customer of a poller.
type Cycler struct {
	DB      *pgxpool.Pool
	Backup  *checkpoint.Backup // nil: no backup store
	Metrics *metrics.Poller    // nil: no metrics
	Log     zerolog.Logger
	// Owner is the poller's lease id; the checkpoint transaction verifies it
	// still holds the pair (fencing). Empty skips the check (tests, syncctl).
	Owner string
	// DryRun cycles read the API and feed the sink but write nothing:
	// no checkpoint, no cycle row, no decision (syncctl replay).
	DryRun bool
	// MaxRewalks bounds immediate re-walks of a walk that changed under us.
	MaxRewalks int
	// FlushEvery pages, a backfill waits for acks and saves its resume point.
	FlushEvery int
	// ParticipationRecent and ParticipationUpcoming bound the project dates
	// whose participants are compared (defaults 30 and 60 days).
	ParticipationRecent, ParticipationUpcoming time.Duration
	// Faults are the chaos suite's kill points (nil: none).
	Faults *faults.Injector
	// Now is the local wall clock (nil: time.Now); the chaos suite skews it.
	// Windows never come from it: they follow the API's Date header.
	Now func() time.Time
}

func (c *Cycler) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// Request is one cycle to run.
type Request struct {
	Customer customer.Customer
	Resource string
	Source   Source
	Sink     Sink
	// Window overrides the checkpoint-derived window (replay).
	From, To time.Time
}

// Result is what a cycle did; it is also the poll_cycles row.
type Result struct {
	ID               string
	CustomerID       string
	Resource         string
	Origin           string
	TraceID          string
	WindowFrom       time.Time
	WindowTo         time.Time
	CheckpointBefore time.Time
	CheckpointAfter  time.Time
	Pages            int
	Requests         int
	RecordsSeen      int
	RecordsPublished int
	Deferred         int
	Statuses         map[int]int
	Started          time.Time
	Duration         time.Duration
	Outcome          string
	Error            string
	Note             string
}

// Run runs one cycle. The returned error is the cycle's failure (also in
// Result.Error); the cycle record is written either way unless DryRun.
func (c *Cycler) Run(ctx context.Context, req Request) (*Result, error) {
	id := uuid.NewString()
	ctx, span := otel.Tracer(tracerName).Start(ctx, "poll "+req.Resource, trace.WithNewRoot(),
		trace.WithAttributes(attribute.String("vomosync.customer_id", req.Customer.ID),
			attribute.String("vomosync.resource", req.Resource), attribute.String("vomosync.cycle_id", id)))
	defer span.End()
	res := &Result{ID: id, CustomerID: req.Customer.ID, Resource: req.Resource, Origin: "poll",
		TraceID: span.SpanContext().TraceID().String(), Statuses: map[int]int{}, Started: c.now()}
	t0 := time.Now() // durations from the monotonic clock; started_at from the database's (insertCycle)
	err := c.run(ctx, req, res)
	res.Duration = time.Since(t0)
	switch {
	case err == nil && res.Outcome == "":
		res.Outcome = OutcomeSuccess
	case err != nil && (errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled)):
		res.Outcome, res.Error = OutcomeInterrupted, err.Error()
	case err != nil:
		res.Outcome, res.Error = OutcomeFailed, err.Error()
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	if !c.DryRun {
		// A fresh context: an interrupted cycle must still be recorded honestly.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if ferr := c.finish(fctx, req, res); ferr != nil && err == nil {
			err = ferr
			res.Outcome, res.Error = OutcomeFailed, ferr.Error()
		}
		cancel()
	}
	c.observe(ctx, res)
	return res, err
}

func (c *Cycler) run(ctx context.Context, req Request, res *Result) error {
	eff := req.Customer.Settings.Effective()
	var cp checkpoint.Checkpoint
	var err error
	if req.From.IsZero() {
		cp, err = checkpoint.Get(ctx, c.DB, req.Customer.ID, req.Resource)
		if errors.Is(err, checkpoint.ErrNotFound) {
			cp, err = c.recover(ctx, req.Customer, req.Resource, eff, req.Source)
		}
		if err != nil {
			return err
		}
	} else {
		cp.Position = req.From
	}
	res.CheckpointBefore, res.CheckpointAfter = cp.Position, cp.Position
	// The overlap re-reads late commits behind what the last window covered:
	// its upper bound, or the newest version when that is later. Anchored on
	// the newest version alone, a source gone quiet would have the overlap
	// behind its last change walked and republished on every cycle, forever.
	base := cp.Position
	if cp.WalkedTo.After(base) {
		base = cp.WalkedTo
	}
	from := base.Add(-eff.Overlap.D())
	if !cp.Position.After(checkpoint.Epoch) {
		from = checkpoint.Epoch
		res.Origin = "backfill"
	}
	if !req.From.IsZero() {
		from, res.Origin = req.From, "replay"
	}
	res.WindowFrom = from
	if !c.DryRun {
		// Not cancellable: a cancel racing the INSERT could leave it to
		// commit after finish() looked for the row, stuck at "running".
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := insertCycle(ictx, c.DB, res)
		cancel()
		if err != nil {
			return err
		}
	}
	var resume *checkpoint.Backfill
	if res.Origin == "backfill" && cp.Backfill != nil {
		resume = cp.Backfill
	}
	var w walk
	for attempt := 0; ; attempt++ {
		w = walk{c: c, req: req, res: res, eff: eff, from: from, to: req.To, resume: resume, origin: res.Origin}
		if err := w.run(ctx); err != nil {
			return err
		}
		if w.trusted || attempt >= c.maxRewalks() {
			break
		}
		c.Log.Info().Ctx(ctx).Str(logging.FCustomerID, req.Customer.ID).Str(logging.FResource, req.Resource).
			Str("reason", w.reason).Msg("walk changed under the poller; walking the window again")
		resume = nil
	}
	res.WindowTo = w.to
	if !w.trusted {
		res.Outcome = OutcomePartial
		res.Note = "walk changed under the poller (" + w.reason + "); checkpoint held at its safe point, the next cycle walks the window again"
		if !c.DryRun && res.Origin == "backfill" {
			if err := checkpoint.SaveBackfill(ctx, c.DB, req.Customer.ID, req.Resource, nil); err != nil {
				return err
			}
		}
		return nil
	}
	if w.maxPublished.After(res.CheckpointAfter) {
		res.CheckpointAfter = w.maxPublished
	}
	return nil
}

func (c *Cycler) maxRewalks() int {
	if c.MaxRewalks <= 0 {
		return 2
	}
	return c.MaxRewalks
}

// walk is one pass over the window.
type walk struct {
	c      *Cycler
	req    Request
	res    *Result
	eff    customer.Settings
	from   time.Time
	to     time.Time
	origin string
	resume *checkpoint.Backfill

	maxPublished time.Time
	trusted      bool
	reason       string
	pagesSince   int
}

// errProbe stops the first request of a walk whose upper bound was not yet
// known: the walk restarts with updated_before set (see run).
var errProbe = errors.New("window upper bound learned; restarting with updated_before")

func (w *walk) run(ctx context.Context) error {
	if w.req.Resource == customer.Participations {
		return w.participations(ctx)
	}
	paths, err := w.paths(ctx)
	if err != nil {
		return err
	}
	first := 0
	if w.resume != nil && w.resume.PathIndex < len(paths) {
		first = w.resume.PathIndex
	}
	trusted := true
	for i := first; i < len(paths); i++ {
		ok, err := w.runPath(ctx, paths[i], i, i == first)
		if err != nil {
			return err
		}
		trusted = trusted && ok
	}
	w.trusted = trusted
	return nil
}

// paths lists what a cycle of the resource walks: one list, or for form
// completions one list per form (the forms themselves are listed first).
func (w *walk) paths(ctx context.Context) ([]string, error) {
	if w.req.Resource != customer.FormCompletions {
		return []string{pathOf(w.req.Resource)}, nil
	}
	var forms []string
	stats, err := w.req.Source.Walk(ctx, "/forms", url.Values{}, func(_ context.Context, p vomo.Page) error {
		if w.to.IsZero() {
			w.to = p.ServerTime.Add(-w.eff.Settle.D()).UTC()
		}
		for _, r := range p.Records {
			forms = append(forms, "/forms/"+url.PathEscape(r.ID)+"/completions")
		}
		return nil
	})
	w.count(stats)
	if err != nil {
		return nil, fmt.Errorf("list forms: %w", err)
	}
	return forms, nil
}

func (w *walk) count(stats vomo.WalkResult) {
	w.res.Pages += stats.Pages
	w.res.Requests += stats.Requests
	for code, n := range stats.Statuses {
		w.res.Statuses[code] += n
	}
}

// runPath walks one list of the window and reports whether it can be trusted.
func (w *walk) runPath(ctx context.Context, path string, pathIndex int, resuming bool) (bool, error) {
	startPage := 1
	startTotal := -1
	changedAcrossResume := false
	if resuming && w.resume != nil {
		startPage = w.resume.NextPage
		w.to, w.maxPublished, startTotal = w.resume.To, w.resume.MaxPublished, w.resume.Total
		changedAcrossResume = w.resume.Changed
		if w.resume.Changed {
			w.reason = w.resume.Reason
		}
	}
	for {
		q := url.Values{}
		q.Set("updated_after", w.from.UTC().Format(time.RFC3339))
		if !w.to.IsZero() {
			// Bounding the set above keeps records created or updated during
			// the walk out of it, so the only ways the set can change under
			// us (deletes, updates moving out) also move meta.total, which the
			// client detects. Without the bound an insert and a delete could
			// cancel out and hide a skipped record.
			q.Set("updated_before", w.to.UTC().Format(time.RFC3339))
		}
		if startPage > 1 {
			q.Set("page", strconv.Itoa(startPage))
		}
		probing := w.to.IsZero()
		stats, err := w.req.Source.Walk(ctx, path, q, func(ctx context.Context, p vomo.Page) error {
			w.c.Faults.Point(faults.PollerAfterFetch)
			if probing {
				// The upper bound comes from the server's clock: records
				// written during the walk are left to the next cycle.
				w.to = p.ServerTime.Add(-w.eff.Settle.D()).UTC()
				if p.Links.Next != "" {
					return errProbe
				}
			}
			if startTotal >= 0 {
				if p.Meta.Total != startTotal {
					changedAcrossResume = true
					w.reason = fmt.Sprintf("total moved from %d to %d across a resume", startTotal, p.Meta.Total)
				}
				startTotal = -1
			}
			return w.page(ctx, p, pathIndex, changedAcrossResume)
		})
		w.count(stats)
		if errors.Is(err, errProbe) {
			continue
		}
		if ferr := w.flush(ctx); err == nil {
			err = ferr
		}
		if err != nil {
			return false, err
		}
		if !stats.Trusted {
			w.reason = stats.Reason
		}
		return stats.Trusted && !changedAcrossResume, nil
	}
}

// page publishes one page's records inside the window and, for a backfill,
// periodically waits for acks and saves the resume point.
func (w *walk) page(ctx context.Context, p vomo.Page, pathIndex int, changed bool) error {
	for _, r := range p.Records {
		w.res.RecordsSeen++
		if r.UpdatedAt.After(w.to) || r.UpdatedAt.Before(w.from) {
			w.res.Deferred++
			continue
		}
		ev := &eventsv1.ChangeEvent{
			CustomerId: w.req.Customer.ID, Resource: w.req.Resource, RecordId: r.ID,
			Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.New(r.UpdatedAt),
			Record: r.Raw, Origin: originOf(w.origin), CycleId: w.res.ID, ObservedAt: timestamppb.New(w.c.now()),
		}
		if err := w.req.Sink.Add(ctx, ev); err != nil {
			return err
		}
		if r.UpdatedAt.After(w.maxPublished) {
			w.maxPublished = r.UpdatedAt
		}
	}
	for _, m := range p.Malformed {
		if err := w.malformed(ctx, m); err != nil {
			return err
		}
	}
	w.pagesSince++
	if w.origin != "backfill" || w.pagesSince < w.c.flushEvery() {
		return nil
	}
	w.pagesSince = 0
	if err := w.flush(ctx); err != nil {
		return err
	}
	if w.c.DryRun {
		return nil
	}
	bf := &checkpoint.Backfill{To: w.to, PathIndex: pathIndex, NextPage: p.Meta.CurrentPage + 1, Total: p.Meta.Total,
		MaxPublished: w.maxPublished, Changed: changed, Reason: w.reason}
	return checkpoint.SaveBackfill(ctx, w.c.DB, w.req.Customer.ID, w.req.Resource, bf)
}

func (w *walk) flush(ctx context.Context) error {
	n, err := w.req.Sink.Flush(ctx)
	w.res.RecordsPublished += n
	if err != nil {
		return fmt.Errorf("hand events to JetStream: %w", err)
	}
	if n > 0 {
		w.c.Faults.Point(faults.PollerAfterPublish)
	}
	return nil
}

func (c *Cycler) flushEvery() int {
	if c.FlushEvery <= 0 {
		return 20
	}
	return c.FlushEvery
}

// pathOf maps a resource to its list path.
func pathOf(resource string) string {
	return "/" + resource
}

func originOf(o string) eventsv1.Origin {
	switch o {
	case "backfill":
		return eventsv1.Origin_ORIGIN_BACKFILL
	case "replay":
		return eventsv1.Origin_ORIGIN_REPLAY
	default:
		return eventsv1.Origin_ORIGIN_POLL
	}
}

// recover applies the customer's lost-checkpoint strategy and records the
// decision. It returns the checkpoint to start from, or ErrHeld.
func (c *Cycler) recover(ctx context.Context, cust customer.Customer, resource string, eff customer.Settings, src Source) (checkpoint.Checkpoint, error) {
	cp := checkpoint.Checkpoint{CustomerID: cust.ID, Resource: resource}
	if c.DryRun {
		return cp, ErrHeld
	}
	actor := "poller:" + c.Owner
	d := checkpoint.Decision{CustomerID: cust.ID, Resource: resource, Actor: actor, Strategy: eff.Recovery.Strategy}
	switch eff.Recovery.Strategy {
	case customer.RecoverRestoreBackup:
		if c.Backup == nil {
			d.Strategy, d.Reason = customer.RecoverHold, "primary checkpoint missing and no backup store configured"
			break
		}
		pos, saved, err := c.Backup.Get(ctx, cust.ID, resource)
		if err != nil {
			d.Strategy, d.Reason = customer.RecoverHold, "primary checkpoint missing; backup unusable: "+err.Error()
			break
		}
		d.New = &pos
		d.Reason = "primary checkpoint missing; restored the backup saved at " + saved.Format(time.RFC3339)
	case customer.RecoverEpoch:
		e := checkpoint.Epoch
		d.New, d.Reason = &e, "primary checkpoint missing; strategy epoch: full re-sync"
	case customer.RecoverWindow:
		p := c.serverNow(ctx, src).Add(-eff.Recovery.Window.D()).UTC()
		d.New = &p
		d.Reason = "primary checkpoint missing; strategy window: restart " + eff.Recovery.Window.D().String() + " back, older misses left to reconciliation"
	default:
		d.Strategy, d.Reason = customer.RecoverHold, "primary checkpoint missing; strategy hold: waiting for an operator"
	}
	if err := checkpoint.Decide(ctx, c.DB, d); err != nil {
		return cp, err
	}
	c.Log.Warn().Ctx(ctx).Str(logging.FCustomerID, cust.ID).Str(logging.FResource, resource).
		Str("strategy", d.Strategy).Str("reason", d.Reason).Msg("lost checkpoint decision")
	if d.New == nil {
		if _, err := c.DB.Exec(ctx, `UPDATE vomosync.schedules SET paused = true, paused_reason = $3
			WHERE customer_id = $1 AND resource = $2 AND kind = 'poll'`, cust.ID, resource, d.Reason); err != nil {
			return cp, fmt.Errorf("hold schedule: %w", err)
		}
		return cp, ErrHeld
	}
	cp.Position = *d.New
	return cp, nil
}

// serverNow is the API's clock when the source follows it (one cheap
// request if it has not answered yet): checkpoint positions are in the
// API's time, and a skewed local clock would move them. Otherwise the local one.
func (c *Cycler) serverNow(ctx context.Context, src Source) time.Time {
	s, ok := src.(interface {
		SyncClock(ctx context.Context) error
		ServerNow() time.Time
	})
	if !ok {
		return c.now()
	}
	if err := s.SyncClock(ctx); err != nil {
		c.Log.Warn().Ctx(ctx).Err(err).Msg("API clock unknown; the window strategy uses the local clock")
		return c.now()
	}
	return s.ServerNow()
}

// finish writes the cycle row and, on success, the checkpoint, in one
// transaction; then the backup copy.
func (c *Cycler) finish(ctx context.Context, req Request, res *Result) error {
	advance := res.Outcome == OutcomeSuccess
	err := pgx.BeginFunc(ctx, c.DB, func(tx pgx.Tx) error {
		if advance {
			if c.Owner != "" {
				if err := checkpoint.CheckLease(ctx, tx, res.CustomerID, res.Resource, c.Owner); err != nil {
					return err
				}
			}
			if err := checkpoint.Advance(ctx, tx, res.CustomerID, res.Resource, res.CheckpointAfter, c.walkedTo(res), nil, res.ID); err != nil {
				return err
			}
		} else {
			res.CheckpointAfter = res.CheckpointBefore
		}
		if err := updateCycle(ctx, tx, res); err != nil {
			return err
		}
		if advance {
			c.Faults.Point(faults.PollerCheckpointTx)
		}
		return nil
	})
	if err != nil {
		res.CheckpointAfter = res.CheckpointBefore
		return fmt.Errorf("record cycle: %w", err)
	}
	if advance && c.Backup != nil {
		if err := c.Backup.Put(ctx, res.CustomerID, res.Resource, res.CheckpointAfter); err != nil {
			// The primary is committed; a stale backup is only a weaker fallback.
			c.Log.Warn().Ctx(ctx).Err(err).Str(logging.FCustomerID, res.CustomerID).Msg("checkpoint backup not written")
		}
	}
	return nil
}

// walkedTo is what a successful cycle's window covered, for the next
// window's start: its upper bound (the API's clock), capped by the
// poller's own clock so that a Date header running ahead cannot move the
// next window past records not yet written. Zero (left as it is) for
// replays, whose window an operator chose.
func (c *Cycler) walkedTo(res *Result) time.Time {
	if res.Origin == "replay" || res.WindowTo.IsZero() {
		return time.Time{}
	}
	if now := c.now(); now.Before(res.WindowTo) {
		return now
	}
	return res.WindowTo
}

func (c *Cycler) observe(ctx context.Context, res *Result) {
	ev := c.Log.Info()
	if res.Outcome != OutcomeSuccess {
		ev = c.Log.Warn()
	}
	ev.Ctx(ctx).Str(logging.FCustomerID, res.CustomerID).Str(logging.FResource, res.Resource).
		Str(logging.FOperation, res.Origin).Str(logging.FCycleID, res.ID).
		Str(logging.FCheckpointBefore, res.CheckpointBefore.UTC().Format(logging.TimeFormat)).
		Str(logging.FCheckpointAfter, res.CheckpointAfter.UTC().Format(logging.TimeFormat)).
		Int(logging.FRecordsSeen, res.RecordsSeen).Int(logging.FRecordsProcessed, res.RecordsPublished).
		Int("pages", res.Pages).Int("requests", res.Requests).
		Int64(logging.FDurationMS, res.Duration.Milliseconds()).Str(logging.FOutcome, res.Outcome).
		Str(logging.FError, res.Error).Str("note", res.Note).Msg("poll cycle")
	if c.Metrics == nil || c.DryRun {
		return
	}
	m := c.Metrics
	m.Cycles.WithLabelValues(res.CustomerID, res.Resource, res.Outcome).Inc()
	m.RecordsSeen.WithLabelValues(res.CustomerID, res.Resource).Add(float64(res.RecordsSeen))
	m.RecordsPublished.WithLabelValues(res.CustomerID, res.Resource).Add(float64(res.RecordsPublished))
	m.Requests.WithLabelValues(res.CustomerID, res.Resource).Add(float64(res.Requests))
	m.CycleDuration.WithLabelValues(res.Resource).Observe(res.Duration.Seconds())
	m.LastCycle.WithLabelValues(res.CustomerID, res.Resource).SetToCurrentTime()
	if res.Outcome == OutcomeSuccess {
		m.LastSuccess.WithLabelValues(res.CustomerID, res.Resource).SetToCurrentTime()
	}
	if res.CheckpointAfter.After(res.CheckpointBefore) {
		m.CheckpointAdvanced.WithLabelValues(res.CustomerID, res.Resource).SetToCurrentTime()
	}
	if !res.WindowTo.IsZero() {
		m.CheckpointLag.WithLabelValues(res.CustomerID, res.Resource).Set(res.WindowTo.Sub(res.CheckpointAfter).Seconds())
	}
}

// malformed hands a record the client could not read to the processor,
// which dead-letters it at once with the reason: the rest of the page and
// the checkpoint move on. It keeps the record's id and updated_at when they
// could be read (a stable message id, so overlapping windows deduplicate).
func (w *walk) malformed(ctx context.Context, m vomo.Malformed) error {
	w.res.RecordsSeen++
	if !m.UpdatedAt.IsZero() && (m.UpdatedAt.After(w.to) || m.UpdatedAt.Before(w.from)) {
		w.res.Deferred++
		return nil
	}
	id := m.ID
	if id == "" {
		sum := sha256.Sum256(m.Raw)
		id = "malformed-" + hex.EncodeToString(sum[:8])
	}
	w.c.Log.Warn().Ctx(ctx).Str(logging.FCustomerID, w.req.Customer.ID).Str(logging.FResource, w.req.Resource).
		Str(logging.FRecordID, id).Int("bytes", m.Size).Str(logging.FError, m.Err.Error()).
		Msg("malformed record set aside for the dead letters")
	return w.req.Sink.Add(ctx, &eventsv1.ChangeEvent{
		CustomerId: w.req.Customer.ID, Resource: w.req.Resource, RecordId: id,
		Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.New(m.UpdatedAt),
		Record: m.Raw, Origin: originOf(w.origin), CycleId: w.res.ID, ObservedAt: timestamppb.New(w.c.now()),
		Malformed: m.Err.Error(),
	})
}
