// Package apply turns a batch of change events into destination writes in
// one transaction: the optimistic guard on vomosync.sync_state, the
// destination write, one audit row per event, outbox rows for one-time
// actions and dead-letter rows, all committed together. It knows nothing of
// NATS acks, so syncctl replay runs it against the dry-run destination.
package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/vomosync/vomosync/pkg/customer"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/processor/destination"
)

// Outcome of one event, as written to vomosync.audit_log.
type Outcome string

// Outcomes.
const (
	Applied      Outcome = "applied"
	SkippedStale Outcome = "skipped_stale"
	Failed       Outcome = "failed"
	DeadLettered Outcome = "dead_lettered"
)

// Error classes of dead letters (dead_letters.error_class and the reason
// label of vomosync_dead_letters_total).
const (
	ClassInvalid          = "invalid"              // undecodable or malformed event
	ClassValidation       = "validation"           // record fails validation
	ClassUnknownCustomer  = "unknown_customer"     // no such customer
	ClassCustomerDisabled = "customer_disabled"    // customer disabled
	ClassConfig           = "destination_config"   // destination misconfigured
	ClassRejected         = "destination_rejected" // destination refused the record
	ClassExhausted        = "retries_exhausted"    // failed on every attempt
)

// fieldWindow is how many top-level fields a record takes in place in
// prepare's shared chunk (a bigger record gets its own slice).
const fieldWindow = 64

// Message is one delivered event. Event is nil when DecodeErr is set.
type Message struct {
	// Ctx carries the record's span: its trace id goes into the audit row.
	Ctx       context.Context
	Event     *eventsv1.ChangeEvent
	DecodeErr error
	Subject   string
	Data      []byte
	Header    nats.Header
	StreamSeq uint64
	// Attempt is the delivery count, 1 for the first delivery.
	Attempt int
}

// Result is what happened to one message.
type Result struct {
	Outcome Outcome
	// Err says why the message failed, was dead-lettered or skipped.
	Err error
	// Class is the dead-letter class (or the failure's, for Failed).
	Class         string
	FirstSeen     bool
	ChangedFields []string
}

// Destinations resolves a customer's destination.
type Destinations interface {
	For(ctx context.Context, c customer.Customer) (destination.Target, error)
}

// Beginner starts the batch transaction (a *pgxpool.Pool).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Applier applies batches. It is safe for concurrent use.
type Applier struct {
	DB           Beginner
	Customers    Customers
	Destinations Destinations
	// MaxAttempts: a message failing on its MaxAttempts-th delivery is
	// dead-lettered instead of retried (0 = never).
	MaxAttempts int
	// DryRun rolls the transaction back: nothing is recorded, and the
	// destination (replay uses destination.DryRun) shows what would run.
	DryRun bool

	stats Stats
	names nameTable
}

// Stats are counters for tests, logs and the benchmark.
type Stats struct {
	OutboxEnqueued  atomic.Int64
	OutboxConflicts atomic.Int64 // enqueue attempts of a dedup key already queued
	TxRetries       atomic.Int64 // transient errors retried in-process
	// Splits counts batch halvings looking for a record the database refuses.
	Splits atomic.Int64
	// Unstaged counts batches the fast path handed to the general path.
	Unstaged atomic.Int64
	// Time spent per phase of the batch transaction, summed over batches.
	Phase [numPhases]atomic.Int64
}

// Phases of a batch, for Stats.Phase.
const (
	PhaseBegin = iota
	PhaseGuard
	PhaseDestination
	PhaseState
	PhaseAudit
	PhaseCommit
	numPhases
)

// PhaseNames name the phases in order.
var PhaseNames = [numPhases]string{"begin", "guard", "destination", "state+outbox", "dead letters+audit", "commit"}

// timer adds elapsed time to phases.
type timer struct {
	s    *Stats
	last time.Time
}

func (t *timer) mark(phase int) {
	now := time.Now()
	t.s.Phase[phase].Add(int64(now.Sub(t.last)))
	t.last = now
}

// Stats returns the applier's counters.
func (a *Applier) Stats() *Stats { return &a.stats }

// cand is an event that passed validation.
type cand struct {
	i        int
	ev       *eventsv1.ChangeEvent
	op       destination.Op
	fields   []field
	hash     []byte
	target   destination.Target
	cust     customer.Customer
	prev     *prevState
	winner   bool
	outcome  Outcome
	inserted bool
}

type prevState struct {
	updated  time.Time
	record   []byte
	noRecord bool
}

// Apply applies msgs in one transaction and returns one result per message.
// Transient database errors are retried in-process (errors.go). When the
// database refuses one record's data, the batch is split until that record
// is alone, which is dead-lettered with the cause while the rest commits (in
// several transactions). An error means the batch must be retried later
// (database unavailable, context cancelled); part of it may have committed,
// which a redelivery finds already applied.
func (a *Applier) Apply(ctx context.Context, msgs []Message) ([]Result, error) {
	res, err := a.attempt(ctx, msgs, nil)
	if err != nil && dataFault(err) && !a.DryRun && ctx.Err() == nil {
		return a.isolate(ctx, msgs, err)
	}
	return res, err
}

// isolate applies msgs, whose transaction failed with cause, in halves
// until the record at fault is alone.
func (a *Applier) isolate(ctx context.Context, msgs []Message, cause error) ([]Result, error) {
	if len(msgs) == 1 {
		return a.attempt(ctx, msgs, cause)
	}
	a.stats.Splits.Add(1)
	half := len(msgs) / 2
	out := make([]Result, 0, len(msgs))
	for _, part := range [][]Message{msgs[:half], msgs[half:]} {
		res, err := a.attempt(ctx, part, nil)
		if err != nil && dataFault(err) && ctx.Err() == nil {
			res, err = a.isolate(ctx, part, err)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}

// attempt runs the batch transaction until it commits, retrying transient
// errors with backoff. refused, when set, is the data error the database
// raised for msgs (a single message): it is dead-lettered with it.
func (a *Applier) attempt(ctx context.Context, msgs []Message, refused error) ([]Result, error) {
	pre, cands, err := a.prepare(ctx, msgs)
	if err != nil {
		return nil, err
	}
	if refused != nil {
		for _, c := range cands {
			pre[c.i] = Result{Outcome: DeadLettered, Class: ClassRejected, Err: dataFaultText(refused)}
		}
		cands = nil
	}
	staged := !a.DryRun
	for n := 1; ; n++ {
		res := slices.Clone(pre)
		for _, c := range cands {
			c.prev, c.outcome, c.inserted = nil, "", false
		}
		err := a.run(ctx, msgs, cands, res, staged)
		if err == nil {
			return res, nil
		}
		if errors.Is(err, errUnstaged) && staged {
			staged = false
			a.stats.Unstaged.Add(1)
			continue
		}
		if !transient(err) || n >= txAttempts || ctx.Err() != nil || !txBackoff(ctx, n) {
			return nil, err
		}
		a.stats.TxRetries.Add(1)
	}
}

// prepare validates messages, resolves customers and destinations, and picks
// the newest version of each record in the batch.
func (a *Applier) prepare(ctx context.Context, msgs []Message) ([]Result, []*cand, error) {
	res := make([]Result, len(msgs))
	dead := func(i int, class string, err error) {
		res[i] = Result{Outcome: DeadLettered, Class: class, Err: err}
	}
	var cands []*cand
	// The records' top-level fields share chunks: one allocation for 32
	// records or more instead of one each.
	var fieldBuf []field
	for i, m := range msgs {
		if m.DecodeErr != nil || m.Event == nil {
			err := m.DecodeErr
			if err == nil {
				err = errors.New("no event")
			}
			dead(i, ClassInvalid, err)
			continue
		}
		ev := m.Event
		if len(ev.GetRecordId()) > 200 {
			dead(i, ClassInvalid, fmt.Errorf("record_id of %d bytes is longer than 200", len(ev.GetRecordId())))
			continue
		}
		if strings.IndexByte(ev.GetRecordId(), 0) >= 0 {
			dead(i, ClassInvalid, errors.New("record_id contains a NUL byte"))
			continue
		}
		if !customer.KnownResource(ev.GetResource()) {
			dead(i, ClassInvalid, fmt.Errorf("unknown resource %q", ev.GetResource()))
			continue
		}
		if reason := ev.GetMalformed(); reason != "" {
			// The poller could not read this record: no retry can help.
			dead(i, ClassInvalid, fmt.Errorf("malformed source record: %s", reason))
			continue
		}
		c, err := a.Customers.Get(ctx, ev.GetCustomerId())
		if errors.Is(err, customer.ErrNotFound) {
			dead(i, ClassUnknownCustomer, err)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("customer %s: %w", ev.GetCustomerId(), err)
		}
		if c.Status == "disabled" {
			dead(i, ClassCustomerDisabled, fmt.Errorf("customer %s is disabled", c.ID))
			continue
		}
		k := &cand{i: i, ev: ev, cust: c, op: destination.Op{
			CustomerID: ev.GetCustomerId(), Resource: ev.GetResource(), RecordID: ev.GetRecordId(),
			ExternalID: destination.ExternalID(ev.GetRecordId()), Delete: ev.GetOperation() == eventsv1.Operation_OPERATION_DELETE,
			SourceUpdatedAt: ev.GetSourceUpdatedAt().AsTime(), TraceID: traceID(m.Ctx),
		}}
		if !k.op.Delete {
			if cap(fieldBuf)-len(fieldBuf) < fieldWindow {
				fieldBuf = make([]field, 0, 32*fieldWindow)
			}
			n := len(fieldBuf)
			fields, err := validateRecord(ev, fieldBuf[n:n:n+fieldWindow])
			if err != nil {
				dead(i, ClassValidation, err)
				continue
			}
			if len(fields) <= fieldWindow { // in place, not reallocated
				fieldBuf = fieldBuf[:n+len(fields)]
			}
			k.fields, k.op.Record = fields, json.RawMessage(ev.GetRecord())
			sum := sha256.Sum256(ev.GetRecord())
			k.hash = sum[:]
		}
		t, err := a.Destinations.For(ctx, c)
		if err != nil {
			if destination.Permanent(err) {
				dead(i, ClassConfig, err)
				continue
			}
			return nil, nil, fmt.Errorf("destination of %s: %w", c.ID, err)
		}
		k.target = t
		cands = append(cands, k)
	}
	// Newest version of each record wins (ties: the later message); the
	// others are superseded within the batch.
	slices.SortStableFunc(cands, func(x, y *cand) int {
		if c := compareKey(x.op, y.op); c != 0 {
			return c
		}
		return x.op.SourceUpdatedAt.Compare(y.op.SourceUpdatedAt)
	})
	for j, k := range cands {
		if j+1 < len(cands) && compareKey(k.op, cands[j+1].op) == 0 {
			res[k.i] = Result{Outcome: SkippedStale, Err: errors.New("superseded by a newer version in the same batch")}
			continue
		}
		k.winner = true
	}
	return res, cands, nil
}

func compareKey(a, b destination.Op) int {
	if c := strings.Compare(a.CustomerID, b.CustomerID); c != 0 {
		return c
	}
	if c := strings.Compare(a.Resource, b.Resource); c != 0 {
		return c
	}
	return strings.Compare(a.RecordID, b.RecordID)
}

// validateRecord checks an upsert's record: a JSON object whose id, when
// present, is the event's record id. It returns the top-level members,
// appended to buf.
func validateRecord(ev *eventsv1.ChangeEvent, buf []field) ([]field, error) {
	raw := ev.GetRecord()
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("upsert without a record")
	}
	fields, err := checkJSON(raw, buf)
	if err != nil {
		return nil, err
	}
	if raw[skipWS(raw, 0)] != '{' {
		return nil, fmt.Errorf("record is %w", errNotObject)
	}
	if j := find(fields, []byte("id")); j >= 0 {
		id := fields[j].val
		if s := string(bytes.Trim(id, `"`)); s != ev.GetRecordId() {
			return nil, fmt.Errorf("record id %s does not match event record_id %q", id, ev.GetRecordId())
		}
	}
	return fields, nil
}

func traceID(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// run is one attempt of the batch transaction. staged lets winners whose
// destination supports it take the fast path (stage.go).
func (a *Applier) run(ctx context.Context, msgs []Message, cands []*cand, res []Result, staged bool) error {
	tm := &timer{s: &a.stats, last: time.Now()}
	tx, err := a.DB.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin batch: %w", err)
	}
	tm.mark(PhaseBegin)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var winners []*cand
	for _, k := range cands {
		if k.winner {
			winners = append(winners, k)
		}
	}
	rest, usedStage := winners, false
	if staged && len(winners) > 0 {
		var fast []*cand
		fast, rest = splitStaged(winners)
		if len(fast) > 0 {
			usedStage = true
			if err := a.applyStaged(ctx, tx, fast, res, tm); err != nil {
				return err
			}
		}
	}
	if len(rest) > 0 {
		if err := guard(ctx, tx, rest); err != nil {
			return err
		}
		tm.mark(PhaseGuard)
		if err := a.writeDestinations(ctx, tx, msgs, rest, res); err != nil {
			return err
		}
		tm.mark(PhaseDestination)
		if err := a.recordState(ctx, tx, rest, res); err != nil {
			return err
		}
	}
	if len(winners) > 0 {
		if err := a.enqueueActions(ctx, tx, winners); err != nil {
			return err
		}
		tm.mark(PhaseState)
	}
	if err := a.deadLetterRows(ctx, tx, msgs, res); err != nil {
		return err
	}
	if err := audit(ctx, tx, msgs, res); err != nil {
		return err
	}
	tm.mark(PhaseAudit)
	if a.DryRun {
		return nil
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	tm.mark(PhaseCommit)
	markAuditReady(tx)
	if usedStage {
		markStageReady(tx)
	}
	return nil
}

// keys holds batch columns as arrays: statements take them through unnest
// (one round trip, binary encoded, no staging table to create and analyze).
type keys struct {
	idx                 []int32
	cust, res, rec, ext []string
	trace               []string
	upd                 []time.Time
	del                 []bool
	hash, record        [][]byte
}

func keysOf(cs []*cand, keep func(*cand) bool) keys {
	var k keys
	for _, c := range cs {
		if keep != nil && !keep(c) {
			continue
		}
		var rec []byte
		if !c.op.Delete {
			rec = c.op.Record
		}
		k.idx = append(k.idx, int32(c.i))
		k.cust, k.res, k.rec = append(k.cust, c.op.CustomerID), append(k.res, c.op.Resource), append(k.rec, c.op.RecordID)
		k.ext, k.trace = append(k.ext, c.op.ExternalID), append(k.trace, c.op.TraceID)
		k.upd, k.del = append(k.upd, c.op.SourceUpdatedAt), append(k.del, c.op.Delete)
		k.hash, k.record = append(k.hash, c.hash), append(k.record, rec)
	}
	return k
}

// rowsArgs are the arguments of statements reading a whole state row from
// unnest($1..$9).
func (k keys) rowsArgs() []any {
	return []any{k.cust, k.res, k.rec, k.ext, k.upd, k.del, k.hash, k.record, k.trace}
}

// planEachTime makes joins against sync_state planned with the batch's
// actual arrays on every run. A cached generic plan, made while the table
// was empty, kept hash-joining against a full scan of it as it grew.
const planEachTime = pgx.QueryExecModeCacheDescribe

const unnestRows = `unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::boolean[], $7::bytea[], $8::jsonb[], $9::text[])
	AS s(customer_id, resource, record_id, external_id, source_updated_at, deleted, content_hash, record, trace_id)`

// guard takes the batch's sync_state locks before any destination row is
// touched, in two sorted passes: insert the records never seen (their rows
// are locked by the insert, and only one transaction can insert a key, which
// makes "first seen" exact), then lock the existing ones. Every transaction
// takes its state locks in key order before its destination locks, and a
// destination row is only written under its state row's lock, so replicas
// wait for each other instead of deadlocking. Versions not newer than the
// applied one are marked stale.
func guard(ctx context.Context, tx pgx.Tx, winners []*cand) error {
	byKey := make(map[[3]string]*cand, len(winners))
	byIdx := make(map[int]*cand, len(winners))
	for _, k := range winners {
		byKey[[3]string{k.op.CustomerID, k.op.Resource, k.op.RecordID}] = k
		byIdx[k.i] = k
	}
	// winners are sorted by key; the ORDER BY keeps the insert in that order.
	k := keysOf(winners, nil)
	rows, err := tx.Query(ctx, `INSERT INTO vomosync.sync_state
			(customer_id, resource, record_id, external_id, source_updated_at, deleted, content_hash, record, trace_id)
		SELECT * FROM `+unnestRows+`
		ORDER BY customer_id, resource, record_id
		ON CONFLICT (customer_id, resource, record_id) DO NOTHING
		RETURNING customer_id, resource, record_id`, k.rowsArgs()...)
	if err != nil {
		return fmt.Errorf("guard insert: %w", err)
	}
	for rows.Next() {
		var key [3]string
		if err := rows.Scan(&key[0], &key[1], &key[2]); err != nil {
			rows.Close()
			return fmt.Errorf("guard insert scan: %w", err)
		}
		if k := byKey[key]; k != nil {
			k.inserted = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("guard insert: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT s.idx, ss.source_updated_at, ss.record, ss.record IS NULL
		FROM unnest($1::int[], $2::text[], $3::text[], $4::text[]) AS s(idx, customer_id, resource, record_id)
		JOIN vomosync.sync_state ss USING (customer_id, resource, record_id)
		ORDER BY ss.customer_id, ss.resource, ss.record_id
		FOR UPDATE OF ss`, planEachTime, k.idx, k.cust, k.res, k.rec)
	if err != nil {
		return fmt.Errorf("guard lock: %w", err)
	}
	for rows.Next() {
		var idx int
		p := &prevState{}
		if err := rows.Scan(&idx, &p.updated, &p.record, &p.noRecord); err != nil {
			rows.Close()
			return fmt.Errorf("guard scan: %w", err)
		}
		if k := byIdx[idx]; k != nil && !k.inserted {
			k.prev = p
			if !p.updated.Before(k.op.SourceUpdatedAt) {
				k.outcome = SkippedStale
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("guard lock: %w", err)
	}
	return nil
}

// writeDestinations writes the fresh versions, one savepoint per
// destination group so one group's failure leaves the others committed.
func (a *Applier) writeDestinations(ctx context.Context, tx pgx.Tx, msgs []Message, winners []*cand, res []Result) error {
	for _, g := range groupByTarget(winners, res) {
		perOp, err := a.writeGroup(ctx, tx, g)
		if err != nil {
			return err
		}
		for j, k := range g {
			a.settle(k, msgs[k.i], perOp[j], res)
		}
	}
	return nil
}

// groupByTarget settles the winners the guard found stale and groups the
// others by destination, in destination key order (a fixed lock order).
func groupByTarget(winners []*cand, res []Result) [][]*cand {
	groups := map[string][]*cand{}
	var keys []string
	for _, k := range winners {
		if k.outcome == SkippedStale {
			res[k.i] = Result{Outcome: SkippedStale, Err: errors.New("not newer than the version already applied")}
			continue
		}
		if _, ok := groups[k.target.Key]; !ok {
			keys = append(keys, k.target.Key)
		}
		groups[k.target.Key] = append(groups[k.target.Key], k)
	}
	slices.Sort(keys)
	out := make([][]*cand, len(keys))
	for i, key := range keys {
		out[i] = groups[key]
	}
	return out
}

// writeGroup returns one result per op. A batch error that blames no op in
// particular, if permanent, is narrowed down by writing ops one at a time.
func (a *Applier) writeGroup(ctx context.Context, tx pgx.Tx, g []*cand) ([]error, error) {
	ops := make([]destination.Op, len(g))
	for j, k := range g {
		ops[j] = k.op
	}
	dest := g[0].target.Dest
	perOp, err := savepoint(ctx, tx, dest, ops)
	switch {
	case err == nil:
		return perOp, nil
	case abortsTx(tx, err) || ctx.Err() != nil:
		return nil, err
	case destination.Permanent(err) && len(ops) > 1:
		out := make([]error, len(ops))
		for j := range ops {
			r, err := savepoint(ctx, tx, dest, ops[j:j+1])
			switch {
			case err != nil && (abortsTx(tx, err) || ctx.Err() != nil):
				return nil, err
			case err != nil:
				out[j] = err
			default:
				out[j] = r[0]
			}
		}
		return out, nil
	default:
		out := make([]error, len(ops))
		for j := range out {
			out[j] = err
		}
		return out, nil
	}
}

func savepoint(ctx context.Context, tx pgx.Tx, dest destination.Destination, ops []destination.Op) ([]error, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	perOp, err := dest.Apply(ctx, sp, ops)
	if err == nil && len(perOp) != len(ops) {
		err = fmt.Errorf("destination answered %d results for %d ops", len(perOp), len(ops))
	}
	if err != nil {
		if rbErr := sp.Rollback(ctx); rbErr != nil && !abortsTx(tx, err) {
			return nil, fmt.Errorf("rollback to savepoint: %w", rbErr)
		}
		return nil, err
	}
	if err := sp.Commit(ctx); err != nil {
		return nil, fmt.Errorf("release savepoint: %w", err)
	}
	return perOp, nil
}

// settle turns a destination answer into the message's result.
func (a *Applier) settle(k *cand, m Message, err error, res []Result) {
	switch {
	case err == nil:
		k.outcome = Applied // confirmed by recordState
	case errors.Is(err, destination.ErrStale):
		k.outcome = SkippedStale
		res[k.i] = Result{Outcome: SkippedStale, Err: err}
	case destination.Permanent(err):
		k.outcome = DeadLettered
		res[k.i] = Result{Outcome: DeadLettered, Class: ClassRejected, Err: err}
	case a.MaxAttempts > 0 && m.Attempt >= a.MaxAttempts:
		k.outcome = DeadLettered
		res[k.i] = Result{Outcome: DeadLettered, Class: ClassExhausted,
			Err: fmt.Errorf("failed on all %d attempts, last: %w", m.Attempt, err)}
	default:
		k.outcome = Failed
		res[k.i] = Result{Outcome: Failed, Class: "destination_unavailable", Err: err}
	}
}

// recordState makes sync_state say what was delivered: applied versions of
// existing records are written over the locked rows; rows the guard inserted
// for versions that were not applied are removed again.
func (a *Applier) recordState(ctx context.Context, tx pgx.Tx, winners []*cand, res []Result) error {
	for _, k := range winners {
		if k.outcome == Applied {
			res[k.i] = a.appliedResult(k)
		}
	}
	update := keysOf(winners, func(k *cand) bool { return k.outcome == Applied && !k.inserted })
	if len(update.idx) > 0 {
		_, err := tx.Exec(ctx, `UPDATE vomosync.sync_state ss SET
				external_id = s.external_id, source_updated_at = s.source_updated_at, deleted = s.deleted,
				content_hash = coalesce(s.content_hash, ss.content_hash), record = coalesce(s.record, ss.record),
				trace_id = s.trace_id, applied_at = now()
			FROM `+unnestRows+`
			WHERE ss.customer_id = s.customer_id AND ss.resource = s.resource AND ss.record_id = s.record_id`,
			append([]any{planEachTime}, update.rowsArgs()...)...)
		if err != nil {
			return fmt.Errorf("sync state: %w", err)
		}
	}
	remove := keysOf(winners, func(k *cand) bool { return k.outcome != Applied && k.inserted })
	if len(remove.idx) > 0 {
		_, err := tx.Exec(ctx, `DELETE FROM vomosync.sync_state ss
			USING unnest($1::text[], $2::text[], $3::text[]) AS s(customer_id, resource, record_id)
			WHERE ss.customer_id = s.customer_id AND ss.resource = s.resource AND ss.record_id = s.record_id`,
			planEachTime, remove.cust, remove.res, remove.rec)
		if err != nil {
			return fmt.Errorf("sync state undo: %w", err)
		}
	}
	return nil
}

// appliedResult is the result of an applied version.
func (a *Applier) appliedResult(k *cand) Result {
	r := Result{Outcome: Applied}
	if !k.op.Delete {
		r.FirstSeen = firstSeen(k)
		var prev []byte
		if k.prev != nil {
			prev = k.prev.record
		}
		r.ChangedFields = changedFields(k.fields, prev, &a.names)
	}
	return r
}

// firstSeen: no earlier version of the record was ever applied (a tombstone
// of a record deleted before we saw it does not count).
func firstSeen(k *cand) bool {
	return !k.op.Delete && (k.inserted || (k.prev != nil && k.prev.noRecord))
}

// enqueueActions writes one outbox row per (action, record) seen for the
// first time. The unique dedup key is a second line of defence: the first
// sighting is decided once, by the sync_state insert.
func (a *Applier) enqueueActions(ctx context.Context, tx pgx.Tx, winners []*cand) error {
	var keys, custs, ress, recs, exts, names, urls, refs, traces []string
	var allow []bool
	var payloads [][]byte
	for _, k := range winners {
		// Effective builds maps: only customers with actions pay for it.
		if k.outcome != Applied || !firstSeen(k) || len(k.cust.Settings.Actions) == 0 {
			continue
		}
		eff := k.cust.Settings.Effective()
		for _, act := range eff.Actions {
			if act.On != "first_seen" || act.Resource != k.op.Resource {
				continue
			}
			key := act.Name + ":" + k.op.CustomerID + ":" + k.op.Resource + ":" + k.op.RecordID
			p, err := json.Marshal(map[string]any{
				"action": act.Name, "event": "first_seen", "dedup_key": key, "customer_id": k.op.CustomerID,
				"resource": k.op.Resource, "external_id": k.op.ExternalID,
				"source_updated_at": k.op.SourceUpdatedAt.UTC(), "record": k.op.Record,
			})
			if err != nil {
				return fmt.Errorf("outbox payload: %w", err)
			}
			keys, custs, ress = append(keys, key), append(custs, k.op.CustomerID), append(ress, k.op.Resource)
			recs, exts, names = append(recs, k.op.RecordID), append(exts, k.op.ExternalID), append(names, act.Name)
			urls, refs, traces = append(urls, act.URL), append(refs, eff.Destination.SigningKey), append(traces, k.op.TraceID)
			allow, payloads = append(allow, eff.Destination.AllowPrivate), append(payloads, p)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	tag, err := tx.Exec(ctx, `INSERT INTO vomosync.outbox
			(dedup_key, customer_id, resource, record_id, external_id, action, url, signing_key_ref, trace_id, allow_private, payload)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::text[], $10::boolean[], $11::jsonb[])
		ORDER BY 1
		ON CONFLICT (dedup_key) DO NOTHING`,
		keys, custs, ress, recs, exts, names, urls, refs, traces, allow, payloads)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	a.stats.OutboxEnqueued.Add(tag.RowsAffected())
	a.stats.OutboxConflicts.Add(int64(len(keys)) - tag.RowsAffected())
	return nil
}

// deadLetterRows records every dead-lettered message. A message
// dead-lettered again after a crash updates its row (same stream sequence).
func (a *Applier) deadLetterRows(ctx context.Context, tx pgx.Tx, msgs []Message, res []Result) error {
	b := &pgx.Batch{}
	for i, r := range res {
		if r.Outcome != DeadLettered {
			continue
		}
		m := msgs[i]
		cust, resource := SubjectParts(m.Subject)
		var recID string
		var updated *time.Time
		if m.Event != nil {
			cust, resource, recID = m.Event.GetCustomerId(), m.Event.GetResource(), m.Event.GetRecordId()
			if ts := m.Event.GetSourceUpdatedAt(); ts != nil {
				t := ts.AsTime()
				updated = &t
			}
		}
		hdr, _ := json.Marshal(m.Header)
		if m.Header == nil {
			hdr = []byte("{}")
		}
		var seq *int64
		if m.StreamSeq > 0 {
			s := int64(m.StreamSeq)
			seq = &s
		}
		b.Queue(`INSERT INTO vomosync.dead_letters AS d (customer_id, resource, record_id, record_updated_at, msg_id,
				subject, payload, headers, error, error_class, attempts, trace_id, first_failed_at, last_failed_at, stream_seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
				coalesce((SELECT min(processed_at) FROM vomosync.audit_log
					WHERE customer_id = $1 AND resource = $2 AND record_id = $3 AND outcome = 'failed'
					AND record_updated_at IS NOT DISTINCT FROM $4 AND processed_at > now() - interval '30 days'), now()),
				now(), $13)
			ON CONFLICT (stream_seq, subject, msg_id) WHERE stream_seq IS NOT NULL DO UPDATE SET
				attempts = greatest(d.attempts, EXCLUDED.attempts), last_failed_at = now(),
				error = EXCLUDED.error, error_class = EXCLUDED.error_class, status = 'open'`,
			cust, resource, recID, updated, m.Header.Get(nats.MsgIdHdr), m.Subject, m.Data, hdr,
			errText(r.Err), r.Class, max(m.Attempt, 1), traceID(m.Ctx), seq)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}

// PostgreSQL refuses COPY into a table with row-level security for a role
// subject to it (the application role), so audit rows are COPYed into a
// per-connection temp table and moved with one INSERT ... SELECT, which the
// policies check like any insert.
const (
	auditStageDDL = `CREATE TEMP TABLE IF NOT EXISTS vomosync_audit_stage (customer_id text NOT NULL, resource text NOT NULL,
	record_id text NOT NULL, record_updated_at timestamptz, trace_id text NOT NULL, cycle_id text NOT NULL, origin text NOT NULL,
	operation text NOT NULL, outcome text NOT NULL, changed_fields text[], error text NOT NULL) ON COMMIT DELETE ROWS`
	auditCopy = `COPY pg_temp.vomosync_audit_stage (customer_id, resource, record_id, record_updated_at, trace_id, cycle_id,
	origin, operation, outcome, changed_fields, error) FROM STDIN (FORMAT binary)`
	auditMove = `INSERT INTO vomosync.audit_log (customer_id, resource, record_id, record_updated_at, trace_id, cycle_id,
	origin, operation, outcome, changed_fields, error)
	SELECT customer_id, resource, record_id, record_updated_at, trace_id, cycle_id, origin, operation, outcome, changed_fields, error
	FROM pg_temp.vomosync_audit_stage`
	// auditReady marks, in the connection's custom data, that the audit
	// stage exists (set after a commit, so a rolled-back creation is redone).
	auditReady = "vomosync.apply.audit_stage"
)

// audit writes one row per message: COPY into the stage, then one insert.
func audit(ctx context.Context, tx pgx.Tx, msgs []Message, res []Result) error {
	if tx.Conn().PgConn().CustomData()[auditReady] == nil {
		if _, err := tx.Exec(ctx, auditStageDDL); err != nil {
			return fmt.Errorf("audit stage: %w", err)
		}
	}
	cb := newCopyBuf(len(msgs) * 256)
	for i, m := range msgs {
		r := res[i]
		var cust, resource, recID, cycle, origin, op string
		origin, op = "unspecified", "unknown"
		var updated *time.Time
		if ev := m.Event; ev == nil {
			cust, resource = SubjectParts(m.Subject)
		} else {
			cust, resource, recID, cycle = ev.GetCustomerId(), ev.GetResource(), ev.GetRecordId(), ev.GetCycleId()
			origin = OriginName(ev.GetOrigin())
			op = "upsert"
			if ev.GetOperation() == eventsv1.Operation_OPERATION_DELETE {
				op = "delete"
			}
			if ts := ev.GetSourceUpdatedAt(); ts != nil {
				t := ts.AsTime()
				updated = &t
			}
		}
		cb.row(11)
		cb.text(pgText(cust))
		cb.text(pgText(resource))
		cb.text(pgText(recID))
		if updated != nil {
			cb.timestamptz(*updated)
		} else {
			cb.null()
		}
		cb.text(traceID(m.Ctx))
		cb.text(pgText(cycle))
		cb.text(origin)
		cb.text(op)
		cb.text(string(r.Outcome))
		if r.Outcome == Applied && r.ChangedFields != nil {
			fields := r.ChangedFields
			for j, f := range fields {
				if strings.IndexByte(f, 0) >= 0 {
					fields = slices.Clone(fields)
					fields[j] = pgText(f)
				}
			}
			cb.textArray(fields)
		} else {
			cb.null()
		}
		cb.text(errText(r.Err))
	}
	if err := copyIn(ctx, tx, cb.done(), auditCopy); err != nil {
		return fmt.Errorf("audit copy: %w", err)
	}
	cb.release()
	if _, err := tx.Exec(ctx, auditMove); err != nil {
		return fmt.Errorf("audit insert: %w", err)
	}
	return nil
}

// pgText drops NUL bytes, which valid UTF-8 allows and Postgres text does
// not (a subject, cycle id or field name must not fail the audit copy).
func pgText(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "")
}

// OriginName is the audit spelling of an origin: poll, backfill, reconcile,
// replay, redrive.
func OriginName(o eventsv1.Origin) string {
	if n, ok := originNames[o]; ok {
		return n
	}
	if o == eventsv1.Origin_ORIGIN_UNSPECIFIED {
		return "unspecified"
	}
	return strings.ToLower(strings.TrimPrefix(o.String(), "ORIGIN_"))
}

// originNames spells the known origins once, not once per audit row.
var originNames = func() map[eventsv1.Origin]string {
	m := map[eventsv1.Origin]string{}
	for v, name := range eventsv1.Origin_name {
		if o := eventsv1.Origin(v); o != eventsv1.Origin_ORIGIN_UNSPECIFIED {
			m[o] = strings.ToLower(strings.TrimPrefix(name, "ORIGIN_"))
		}
	}
	return m
}()

// SubjectParts returns the customer and resource tokens of a change subject
// ("unknown" for what it cannot tell), for messages that do not decode.
func SubjectParts(subject string) (cust, resource string) {
	parts := strings.Split(subject, ".")
	cust, resource = "unknown", "unknown"
	if len(parts) == 4 {
		cust, resource = parts[2], parts[3]
	}
	return cust, resource
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 2000 {
		s = s[:2000]
	}
	return pgText(strings.ToValidUTF8(s, "?"))
}
