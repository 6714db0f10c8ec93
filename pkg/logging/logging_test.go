package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/vomosync/vomosync/pkg/logging"
)

func TestTraceIDFromContext(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := logging.New("test", "info", &buf)
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.Info().Ctx(ctx).Str(logging.FOutcome, "success").Msg("done")
	span.End()

	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	require.Equal(t, span.SpanContext().TraceID().String(), line[logging.FTraceID])
	require.Equal(t, "test", line[logging.FService])
	require.Equal(t, "success", line[logging.FOutcome])
}
