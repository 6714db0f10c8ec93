// Package reconcile runs one reconciliation of one customer's resource: it
// walks the VOMO list (a recent window, or everything), compares it with what
// vomosync delivered (sync_state, audit log, dead letters, poll cycles),
// classifies every gap with the cause the evidence points to, records the run
// and its gaps, and repairs them with a graduated response. It is importable
// so that `syncctl reconcile` runs exactly what the scheduled service runs.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/vomosync/vomosync/pkg/apiclient"
	"github.com/vomosync/vomosync/pkg/budget"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/faults"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/vomo"
)

const tracerName = "github.com/vomosync/vomosync/services/reconciler/reconcile"

// Modes of a run. Report and repair are per-customer settings; dry_run is an
// operator's preview: the run and its gaps are recorded, nothing is published.
const (
	ModeReport = "report"
	ModeRepair = "repair"
	ModeDryRun = "dry_run"
)

// Kinds of a run.
const (
	KindIncremental = "incremental"
	KindFull        = "full"
)

// Outcomes of a run, as recorded in recon_runs and counted in metrics.
const (
	OutcomeSuccess     = "success"
	OutcomeHeld        = "held"
	OutcomeUntrusted   = "untrusted"
	OutcomeFailed      = "failed"
	OutcomeInterrupted = "interrupted"
)

// Gap classes.
const (
	ClassMissing    = "missing"
	ClassStale      = "stale"
	ClassDeleted    = "deleted"
	ClassFieldDrift = "field_drift"
	// ClassDestinationDrift: the Postgres destination row differs from what
	// vomosync delivered (sync_state): changed, removed or resurrected
	// behind its back. Cause destination_differs.
	ClassDestinationDrift = "destination_drift"
	ClassUntrustedWalk    = "untrusted_walk"
)

// Suspected causes, from the evidence; what an operator reads first.
const (
	// CauseNeverPublished: no processing attempt of this version and no
	// successful poll cycle window covered its updated_at (the checkpoint
	// moved past it without a walk, or every walk of it failed).
	CauseNeverPublished = "never_published"
	// CauseLateWrite: a successful poll cycle walked the window holding its
	// updated_at and did not publish it: it was committed behind the
	// checkpoint after that walk.
	CauseLateWrite = "late_write"
	// CauseDeadLettered: published, and the processor dead-lettered it.
	CauseDeadLettered = "dead_lettered"
	// CauseDestinationDiffers: the processor applied this version (audit
	// log) but the destination no longer holds it.
	CauseDestinationDiffers = "destination_differs"
	// CauseSilentChange: fields changed at the source without updated_at moving.
	CauseSilentChange = "silent_source_change"
	// CauseSourceDeleted: gone from a complete, trusted source walk (and a
	// detail read answered 404); VOMO keeps no tombstones.
	CauseSourceDeleted = "source_deleted"
	// CauseWalkProblem: the source walk could not be trusted.
	CauseWalkProblem = "walk_problem"
)

// Errors.
var (
	// ErrBadRequest wraps a Request that cannot run (unknown resource or mode).
	ErrBadRequest = errors.New("bad reconcile request")
	// ErrUntrustedWalk wraps the walk failure of a run whose outcome is
	// untrusted (a failed page, a 401 midway). errors.Is also finds the vomo
	// error inside (vomo.ErrUnauthorized...).
	ErrUntrustedWalk = errors.New("source walk failed")
)

// Source is what a run needs of the VOMO API.
type Source interface {
	Walk(ctx context.Context, path string, q url.Values, fn func(context.Context, vomo.Page) error) (vomo.WalkResult, error)
	Get(ctx context.Context, path string) (json.RawMessage, error)
	ServerNow() time.Time
}

// Broker is what a run needs of JetStream: publishing repairs and reading
// how far the processor got.
type Broker interface {
	messaging.AsyncPublisher
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// Reconciler runs reconciliations. One serves every customer.
type Reconciler struct {
	DB        *pgxpool.Pool
	JS        Broker // nil: repair and dry-run only report what they would publish
	Customers *customer.Store
	Metrics   *metrics.Reconciler // nil: no metrics
	API       *metrics.API        // nil: no API metrics
	Log       zerolog.Logger
	// NewSource builds a customer's VOMO client. Nil uses apiclient.New on
	// the customer's shared budget as a background caller (see BudgetReserve).
	NewSource func(ctx context.Context, cust customer.Customer, token string) (Source, error)
	// ClientOptions are added to every VOMO client built by default.
	ClientOptions []vomo.Option

	// BatchSize is how many source records are compared per round trip
	// (default 1000); it bounds the run's memory together with the publish window.
	BatchSize int
	// BudgetReserve is the share of the customer's burst the reconciler
	// leaves in the shared bucket for the poller (default 0.5).
	BudgetReserve float64
	// ConfirmDeletes bounds detail reads confirming deletion candidates
	// (default 100); more candidates are confirmed by a random sample.
	ConfirmDeletes int
	// PersistRuns holds repair when this many consecutive runs found gaps
	// (default 3; negative disables).
	PersistRuns int
	// SettleTimeout bounds the wait for the processor to take in what was
	// published before the run (default 2m).
	SettleTimeout time.Duration
	// Faults are the chaos suite's kill points (nil: none).
	Faults *faults.Injector
	// Now is the local wall clock (nil: time.Now); the chaos suite skews it.
	// Windows never come from it: they follow the API's Date header.
	Now func() time.Time
}

func (r *Reconciler) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

// Request is one run to do.
type Request struct {
	Customer string
	Resource string
	// Full walks everything and detects deletions; otherwise the run covers
	// records updated in the customer's daily window.
	Full bool
	// Mode is report, repair or dry_run; empty uses the customer's setting.
	Mode string
	// Force releases a held repair: the operator has looked.
	Force bool
	// Window overrides the customer's daily window (incremental runs).
	Window time.Duration
	// Actor says who asked: "scheduler:<id>" or "operator:<name>".
	Actor string
	// Progress, when set, is told after each page: records walked and the
	// source's total (syncctl draws its progress bar with it).
	Progress func(done, total int)
	// Alive, when set, is called whenever the run moves on (a page walked,
	// a step of the comparison done, a confirmation answered, a window of
	// repairs acked): the scheduler's stall watchdog cancels a run that
	// stops calling it.
	Alive func()
}

// RunResult is what a run found and did; it is also the recon_runs row.
type RunResult struct {
	ID         string
	TraceID    string
	CustomerID string
	Resource   string
	Kind       string
	Mode       string
	Actor      string
	WindowFrom time.Time // zero for full runs
	WindowTo   time.Time // the source's clock when the walk started
	// Horizon is the poller's checkpoint at the start: versions newer than
	// it are still on their way and counted as Pending, not as gaps.
	Horizon time.Time
	// Expected is the gap-rate denominator: source records for full runs,
	// the destination's live records for incremental runs.
	Expected      int
	SourceRecords int
	Compared      int
	Pending       int
	Gaps          map[string]int // per class
	Causes        map[string]int // per cause
	GapRate       float64
	Repaired      int
	Redriven      int
	Held          bool
	HeldReason    string
	Forced        bool
	Trusted       bool
	Untrusted     string // why the walk was not trusted
	DriftChecked  int
	DriftFound    int
	Requests      int
	Started       time.Time
	Duration      time.Duration
	Outcome       string
	Error         string
	Note          string
}

// Actionable is the number of gaps a repair acts on (every class but
// untrusted_walk).
func (r *RunResult) Actionable() int {
	return r.Gaps[ClassMissing] + r.Gaps[ClassStale] + r.Gaps[ClassDeleted] + r.Gaps[ClassFieldDrift] +
		r.Gaps[ClassDestinationDrift]
}

func (r *RunResult) note(format string, args ...any) {
	if r.Note != "" {
		r.Note += "; "
	}
	r.Note += fmt.Sprintf(format, args...)
}

// Run runs one reconciliation. The run is recorded whatever happens (unless
// the request is invalid or the customer unknown). The error is the run's
// failure; a walk failure wraps ErrUntrustedWalk and the vomo error.
func (r *Reconciler) Run(ctx context.Context, req Request) (*RunResult, error) {
	if !customer.KnownResource(req.Resource) {
		return nil, fmt.Errorf("%w: unknown resource %q", ErrBadRequest, req.Resource)
	}
	cust, err := r.Customers.Get(ctx, req.Customer)
	if err != nil {
		return nil, err
	}
	eff := cust.Settings.Effective()
	mode := req.Mode
	if mode == "" {
		mode = eff.Reconcile.Mode
	}
	switch mode {
	case ModeReport, ModeRepair, ModeDryRun:
	default:
		return nil, fmt.Errorf("%w: mode %q is not one of report, repair, dry_run", ErrBadRequest, mode)
	}
	kind := KindIncremental
	if req.Full {
		kind = KindFull
	}
	id := uuid.NewString()
	ctx, span := otel.Tracer(tracerName).Start(ctx, "reconcile "+req.Resource, trace.WithNewRoot(),
		trace.WithAttributes(attribute.String("vomosync.customer_id", cust.ID),
			attribute.String("vomosync.resource", req.Resource), attribute.String("vomosync.run_id", id),
			attribute.String("vomosync.recon_kind", kind), attribute.String("vomosync.recon_mode", mode)))
	defer span.End()
	res := &RunResult{ID: id, TraceID: span.SpanContext().TraceID().String(), CustomerID: cust.ID,
		Resource: req.Resource, Kind: kind, Mode: mode, Actor: req.Actor, Forced: req.Force, Trusted: true,
		Gaps: map[string]int{}, Causes: map[string]int{}}
	t0 := time.Now() // durations from the monotonic clock; started_at from the database's (insertRun)
	if err := insertRun(ctx, r.DB, res); err != nil {
		return nil, err
	}
	err = r.run(withAlive(ctx, req.Alive), req, cust, res)
	res.Duration = time.Since(t0)
	cancelled := err != nil && (errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled))
	cause := context.Cause(ctx)
	switch {
	case cancelled && cause != nil && !errors.Is(cause, context.Canceled):
		// Cancelled for a reason (the stall watchdog): a failure to look
		// at, not an interruption to resume at once.
		res.Outcome = OutcomeFailed
		err = fmt.Errorf("%w: %w", cause, err)
	case cancelled:
		res.Outcome = OutcomeInterrupted
		if !errors.Is(err, context.Canceled) {
			// pgx closes the connection of a cancelled statement; the write
			// that meets it says "closed network connection", not why.
			err = fmt.Errorf("%w: %w", ctx.Err(), err)
		}
	case !res.Trusted:
		res.Outcome = OutcomeUntrusted
	case err != nil:
		res.Outcome = OutcomeFailed
	case res.Held:
		res.Outcome = OutcomeHeld
	default:
		res.Outcome = OutcomeSuccess
	}
	if err != nil {
		res.Error = err.Error()
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	// A fresh context: an interrupted run must still be recorded honestly.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	if ferr := finishRun(fctx, r.DB, res); ferr != nil && err == nil {
		err = ferr
		res.Outcome, res.Error = OutcomeFailed, ferr.Error()
	}
	cancel()
	r.observe(ctx, res)
	return res, err
}

// source builds the customer's VOMO client on its shared budget, as a
// background caller that leaves part of the burst to the poller.
func (r *Reconciler) source(ctx context.Context, cust customer.Customer) (Source, error) {
	token, err := r.Customers.Token(ctx, cust.ID)
	if err != nil {
		return nil, err
	}
	if r.NewSource != nil {
		return r.NewSource(ctx, cust, token)
	}
	eff := cust.Settings.Effective()
	share := r.BudgetReserve
	if share <= 0 {
		share = 0.5
	}
	bg := budget.New(r.DB, cust.ID, eff.BudgetPerMinute, eff.BudgetBurst).Background(share * float64(eff.BudgetBurst))
	if r.API != nil {
		bg.OnWait = func(d time.Duration) { r.API.BudgetWait.WithLabelValues(cust.ID).Add(d.Seconds()) }
	}
	opts := append([]vomo.Option{vomo.WithLimiter(bg)}, r.ClientOptions...)
	cl, err := apiclient.New(r.DB, cust, token, r.API, opts...)
	if err != nil {
		return nil, err
	}
	return cl, nil
}

func (r *Reconciler) batchSize() int {
	if r.BatchSize <= 0 {
		return 1000
	}
	return r.BatchSize
}

func (r *Reconciler) confirmDeletes() int {
	if r.ConfirmDeletes <= 0 {
		return 100
	}
	return r.ConfirmDeletes
}

func (r *Reconciler) persistRuns() int {
	if r.PersistRuns == 0 {
		return 3
	}
	return r.PersistRuns
}

func (r *Reconciler) settleTimeout() time.Duration {
	if r.SettleTimeout <= 0 {
		return 2 * time.Minute
	}
	return r.SettleTimeout
}
