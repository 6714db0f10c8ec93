// Package logging builds the one zerolog JSON logger of a service and owns
// the field names every component logs with.
package logging

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// Field names shared by every service; dashboards and the log test rely on them.
const (
	FService          = "service"
	FComponent        = "component"
	FCustomerID       = "customer_id"
	FResource         = "resource"
	FOperation        = "operation"
	FTraceID          = "trace_id"
	FSpanID           = "span_id"
	FCheckpointBefore = "checkpoint_before"
	FCheckpointAfter  = "checkpoint_after"
	FRecordsSeen      = "records_seen"
	FRecordsProcessed = "records_processed"
	FDurationMS       = "duration_ms"
	FOutcome          = "outcome"
	FError            = "error"
	FRecordID         = "record_id"
	FCycleID          = "cycle_id"
)

// New returns a JSON logger for service at level, writing to w (stderr when nil).
// The trace hook adds trace_id/span_id from the event's context.
func New(service, level string, w io.Writer) zerolog.Logger {
	if w == nil {
		w = os.Stderr
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Str(FService, service).Logger().Hook(TraceHook{})
}

// TimeFormat is the layout of every time this package's callers log:
// sub-second, so log lines compare exactly with database timestamps.
const TimeFormat = time.RFC3339Nano

// TraceHook adds the active span's ids to events logged with .Ctx(ctx).
type TraceHook struct{}

// Run implements zerolog.Hook. It also stamps the time with sub-second
// precision (zerolog's own timestamp follows a process-wide format).
func (TraceHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format(TimeFormat))
	ctx := e.GetCtx()
	if ctx == nil {
		return
	}
	sc := trace.SpanContextFromContext(ctx)
	if sc.IsValid() {
		e.Str(FTraceID, sc.TraceID().String()).Str(FSpanID, sc.SpanID().String())
	}
}

// Component returns a child logger tagged with a component name.
func Component(l zerolog.Logger, name string) zerolog.Logger {
	return l.With().Str(FComponent, name).Logger()
}

// From returns the logger carried by ctx (a disabled one when none).
func From(ctx context.Context) *zerolog.Logger { return zerolog.Ctx(ctx) }
