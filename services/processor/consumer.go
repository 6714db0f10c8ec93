package processor

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/services/processor/apply"
)

const tracerName = "github.com/vomosync/vomosync/services/processor"

// HeaderStreamSeq names the original stream sequence on a dead letter.
const HeaderStreamSeq = "Vomosync-Stream-Seq"

// errCrash marks a hook-simulated crash: stop without acking or draining.
var errCrash = errors.New("simulated crash")

// item is one delivered message, decoded, with its consumer span.
type item struct {
	raw  jetstream.Msg
	msg  apply.Message
	span trace.Span
}

// fetcher pulls from the shared consumer and hands each message to the
// worker owning its record (a hash of customer, resource and record id), so
// the workers of one replica never write the same record concurrently and
// never wait on each other's row locks; versions of one record stay in order.
type fetcher struct {
	p      *Processor
	cons   jetstream.Consumer
	queues []chan []item
	log    zerolog.Logger
}

// run fetches until ctx is cancelled, then closes the queues so the workers
// finish what they hold. Messages it cannot hand over are nak'd.
func (f *fetcher) run(ctx context.Context) error {
	defer func() {
		for _, q := range f.queues {
			close(q)
		}
	}()
	idle := 0
	for ctx.Err() == nil {
		raw, err := f.fetch(ctx)
		if err != nil {
			idle++
			f.log.Warn().Err(err).Int("messages", len(raw)).Msg("fetch failed")
			if len(raw) == 0 {
				sleep(ctx, backoff(idle, 100*time.Millisecond, 5*time.Second))
				continue
			}
			// What did arrive is handed on, never dropped unanswered.
		} else {
			idle = 0
		}
		parts := make([][]item, len(f.queues))
		for _, it := range decode(ctx, raw) {
			w := owner(it.msg, len(f.queues))
			parts[w] = append(parts[w], it)
		}
		for w, part := range parts {
			if len(part) == 0 {
				continue
			}
			select {
			case f.queues[w] <- part:
			case <-ctx.Done():
				for _, it := range part {
					_ = it.raw.Nak()
					it.span.End()
				}
			}
		}
	}
	return nil
}

// owner picks the worker of a message's record. The seed only has to hold
// within this process: a record's messages go to one worker, in order.
func owner(m apply.Message, workers int) int {
	var h maphash.Hash
	h.SetSeed(ownerSeed)
	if ev := m.Event; ev != nil {
		_, _ = h.WriteString(ev.GetCustomerId())
		_ = h.WriteByte('/')
		_, _ = h.WriteString(ev.GetResource())
		_ = h.WriteByte('/')
		_, _ = h.WriteString(ev.GetRecordId())
	} else {
		_, _ = h.WriteString(m.Subject)
	}
	return int(h.Sum64() % uint64(workers))
}

var ownerSeed = maphash.MakeSeed()

// fetch takes what is pending without waiting (up to a batch per worker);
// on an idle stream it waits up to MaxWait for one message, then takes what
// else arrived with it.
func (f *fetcher) fetch(ctx context.Context) ([]jetstream.Msg, error) {
	n := f.p.cfg.BatchSize * len(f.queues)
	msgs, err := collect(f.cons.FetchNoWait(n))
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	// Not cancelled by a stop: the server would go on delivering to a pull
	// request the client abandoned, and those messages would wait out their
	// ack timeout. A stop waits at most MaxWait and applies what came.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.p.cfg.MaxWait)
	defer cancel()
	first, err := collect(f.cons.Fetch(1, jetstream.FetchContext(wctx)))
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	if err != nil || len(first) == 0 || n == 1 {
		return first, err
	}
	more, err := collect(f.cons.FetchNoWait(n - 1))
	return append(first, more...), err
}

type worker struct {
	p     *Processor
	id    int
	queue chan []item
	log   zerolog.Logger
	limit batchLimit
}

// run applies what the fetcher hands over until the queue is closed. Work
// continues on a context that outlives ctx by DrainTimeout, so the batches
// in flight at a stop are finished and acked.
func (w *worker) run(ctx context.Context) error {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.p.cfg.DrainTimeout, cancel)
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stop()
	for batch := range w.queue {
		// Take whatever else is queued, up to a batch.
	more:
		for len(batch) < w.p.cfg.BatchSize {
			select {
			case next, ok := <-w.queue:
				if !ok {
					break more
				}
				batch = append(batch, next...)
			default:
				break more
			}
		}
		for len(batch) > 0 {
			n := min(len(batch), w.limit.current())
			chunk := batch[:n]
			batch = batch[n:]
			start := time.Now()
			err := w.process(work, chunk)
			w.limit.observe(n, time.Since(start))
			if errors.Is(err, errCrash) {
				return err
			}
			if err != nil {
				// Database or broker down: the batch was nak'd; slow down
				// so the outage does not burn deliveries.
				sleep(ctx, w.p.cfg.RetryBase)
			}
		}
	}
	return nil
}

// batchLimit adapts a worker's batch size to latency: it halves when a
// batch takes longer than the target (a slow destination, a loaded
// database) and grows back by a quarter while full batches stay fast.
type batchLimit struct {
	max, n int
	target time.Duration
}

func (l *batchLimit) current() int { return max(l.n, 1) }

func (l *batchLimit) observe(size int, took time.Duration) {
	switch {
	case took > l.target:
		l.n = max(l.n/2, 10, 1)
		l.n = min(l.n, l.max)
	case size >= l.n && took < l.target/2:
		l.n = min(l.n+l.n/4+1, l.max)
	}
}

func collect(b jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for m := range b.Messages() {
		out = append(out, m)
	}
	if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return out, err
	}
	return out, nil
}

// process applies one batch and answers every message: ack after commit,
// nak with backoff on a retryable failure, dead-letter and term otherwise.
func (w *worker) process(ctx context.Context, items []item) (err error) {
	start := time.Now()
	m := w.p.deps.Metrics
	raw := make([]jetstream.Msg, len(items))
	msgs := make([]apply.Message, len(items))
	spans := make([]trace.Span, len(items))
	for i, it := range items {
		raw[i], msgs[i], spans[i] = it.raw, it.msg, it.span
	}
	defer func() {
		if r := recover(); r != nil {
			m.Panics.Inc()
			err = fmt.Errorf("panic processing batch: %v", r)
			w.log.Error().Interface("panic", r).Msg("batch panicked; nak'd for redelivery")
			w.nakAll(raw, msgs)
			endSpans(spans, nil, err)
		}
	}()
	// A batch outliving half the ack wait (a slow destination) tells
	// JetStream it is still being worked on, so it is not redelivered to
	// another replica meanwhile.
	stopBeat := heartbeat(raw, w.p.cfg.AckWait/2)
	results, err := w.p.applier.Apply(ctx, msgs)
	stopBeat()
	if err != nil {
		w.nakAll(raw, msgs)
		endSpans(spans, nil, err)
		w.logBatch(msgs, nil, time.Since(start), err)
		return err
	}
	if hook := w.p.deps.Hooks.AfterCommit; hook != nil {
		if herr := hook(ctx, len(raw)); herr != nil {
			endSpans(spans, results, herr)
			return fmt.Errorf("%w: %v", errCrash, herr)
		}
	}
	for i, msg := range raw {
		w.answer(ctx, msg, msgs[i], results[i])
	}
	m.BatchSize.Observe(float64(len(raw)))
	m.BatchDuration.Observe(time.Since(start).Seconds())
	w.count(msgs, results)
	w.p.lag.observe(raw)
	endSpans(spans, results, nil)
	w.logBatch(msgs, results, time.Since(start), nil)
	return nil
}

// decode turns deliveries into apply messages, each with its consumer span
// as a child of the publisher's span (so one trace spans the poll cycle).
func decode(ctx context.Context, raw []jetstream.Msg) []item {
	tr := otel.Tracer(tracerName)
	out := make([]item, len(raw))
	for i, r := range raw {
		ev, derr := messaging.Decode(r.Data())
		var resource string
		if ev != nil {
			resource = ev.GetResource()
		} else {
			_, resource = apply.SubjectParts(r.Subject())
		}
		sctx, span := tr.Start(messaging.Extract(ctx, r.Headers()), "process "+resource,
			trace.WithSpanKind(trace.SpanKindConsumer))
		m := apply.Message{Ctx: sctx, Event: ev, DecodeErr: derr, Subject: r.Subject(), Data: r.Data(), Header: r.Headers(), Attempt: 1}
		if md, err := r.Metadata(); err == nil {
			m.StreamSeq, m.Attempt = md.Sequence.Stream, int(md.NumDelivered)
		}
		if ev != nil {
			span.SetAttributes(attribute.String("vomosync.customer_id", ev.GetCustomerId()),
				attribute.String("vomosync.record_id", ev.GetRecordId()), attribute.Int("vomosync.attempt", m.Attempt))
		}
		out[i] = item{raw: r, msg: m, span: span}
	}
	return out
}

func endSpans(spans []trace.Span, results []apply.Result, err error) {
	for i, s := range spans {
		switch {
		case err != nil:
			s.SetStatus(codes.Error, err.Error())
		case results != nil:
			r := results[i]
			s.SetAttributes(attribute.String("vomosync.outcome", string(r.Outcome)))
			if r.Err != nil && (r.Outcome == apply.Failed || r.Outcome == apply.DeadLettered) {
				s.SetStatus(codes.Error, r.Err.Error())
			}
		}
		s.End()
	}
}

// answer acks, naks or terminates one message after the commit.
func (w *worker) answer(ctx context.Context, msg jetstream.Msg, m apply.Message, r apply.Result) {
	var err error
	switch r.Outcome {
	case apply.Applied, apply.SkippedStale:
		err = msg.Ack()
	case apply.Failed:
		err = msg.NakWithDelay(w.retryDelay(m.Attempt))
	case apply.DeadLettered:
		if perr := w.publishDeadLetter(ctx, msg, m, r); perr != nil {
			// The dead_letters row is committed; the redelivery updates it
			// and tries the publish again.
			w.log.Error().Err(perr).Str(logging.FRecordID, recordID(m)).Msg("publish dead letter")
			err = msg.NakWithDelay(w.retryDelay(m.Attempt))
			break
		}
		err = msg.Term()
	}
	if err != nil {
		// An answer lost here means a redelivery, which the guard absorbs.
		w.log.Warn().Err(err).Str(logging.FRecordID, recordID(m)).Msg("answer message")
	}
}

// publishDeadLetter copies the original message to the dead-letter stream
// with the reason in headers. Its message id makes a repeat after a crash a
// duplicate JetStream drops.
func (w *worker) publishDeadLetter(ctx context.Context, msg jetstream.Msg, m apply.Message, r apply.Result) error {
	cust, resource := apply.SubjectParts(m.Subject)
	if m.Event != nil {
		cust, resource = m.Event.GetCustomerId(), m.Event.GetResource()
	}
	if !messaging.ValidToken(cust) {
		cust = "unknown"
	}
	if !messaging.ValidToken(resource) {
		resource = "unknown"
	}
	out := nats.NewMsg(messaging.DLQSubject(cust, resource))
	out.Data = msg.Data()
	for k, v := range msg.Headers() {
		out.Header[k] = v
	}
	errText := ""
	if r.Err != nil {
		errText = r.Err.Error()
	}
	if len(errText) > 1024 {
		errText = errText[:1024]
	}
	out.Header.Set(messaging.HeaderError, r.Class+": "+errText)
	out.Header.Set(messaging.HeaderAttempts, strconv.Itoa(m.Attempt))
	out.Header.Set(HeaderStreamSeq, strconv.FormatUint(m.StreamSeq, 10))
	out.Header.Set(nats.MsgIdHdr, "dlq:"+strconv.FormatUint(m.StreamSeq, 10)+":"+msg.Headers().Get(nats.MsgIdHdr))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.p.deps.JS.PublishMsg(pctx, out, jetstream.WithExpectStream(messaging.StreamDLQ)); err != nil {
		return fmt.Errorf("publish %s: %w", out.Subject, err)
	}
	return nil
}

// heartbeat marks msgs in progress every interval until stopped.
func heartbeat(msgs []jetstream.Msg, every time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	}()
	return func() { close(done) }
}

// nakAll answers a batch that did not commit: everything is retried.
func (w *worker) nakAll(raw []jetstream.Msg, msgs []apply.Message) {
	for i, msg := range raw {
		attempt := 1
		if i < len(msgs) {
			attempt = msgs[i].Attempt
		}
		_ = msg.NakWithDelay(w.retryDelay(attempt))
	}
}

// retryDelay grows exponentially with the attempt, with jitter so retries of
// one batch spread out.
func (w *worker) retryDelay(attempt int) time.Duration {
	return backoff(attempt, w.p.cfg.RetryBase, w.p.cfg.RetryMax)
}

func backoff(attempt int, base, maxDelay time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func recordID(m apply.Message) string {
	if m.Event != nil {
		return m.Event.GetRecordId()
	}
	return ""
}

// lagTracker remembers when the oldest message of the last batch was
// published, for consumer_oldest_pending_age_seconds.
type lagTracker struct{ oldest atomic.Int64 }

func (l *lagTracker) observe(raw []jetstream.Msg) {
	var oldest int64
	for _, r := range raw {
		if md, err := r.Metadata(); err == nil {
			if ts := md.Timestamp.UnixNano(); oldest == 0 || ts < oldest {
				oldest = ts
			}
		}
	}
	if oldest > 0 {
		l.oldest.Store(oldest)
	}
}

func (l *lagTracker) age() time.Duration {
	ts := l.oldest.Load()
	if ts == 0 {
		return 0
	}
	return time.Since(time.Unix(0, ts))
}
