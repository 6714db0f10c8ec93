package messaging_test

import (
	"context"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/natstest"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

func TestPublishDedupAndTraceContext(t *testing.T) {
	t.Parallel()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, _ := natstest.Start(t)
	nc, js, err := messaging.Connect(ctx, url, "test", 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1}))
	require.NoError(t, messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1}), "idempotent")

	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(ctx, "cycle")
	ev := &eventsv1.ChangeEvent{CustomerId: "acme", Resource: "users", RecordId: "7",
		Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.New(time.Unix(100, 0)),
		Origin: eventsv1.Origin_ORIGIN_POLL, Record: []byte(`{"id":7}`)}
	b := messaging.NewBatch(js)
	for range 3 {
		m, err := messaging.NewMsg(ctx, ev, messaging.MsgID(ev, ""))
		require.NoError(t, err)
		require.NoError(t, b.Add(m))
	}
	n, err := b.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, 2, b.Duplicates)

	st, err := js.Stream(ctx, messaging.StreamChanges)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Msgs, "same version stored once")

	raw, err := st.GetMsg(ctx, 1)
	require.NoError(t, err)
	got, err := messaging.Decode(raw.Data)
	require.NoError(t, err)
	require.Equal(t, "7", got.GetRecordId())
	rctx := messaging.Extract(context.Background(), raw.Header)
	require.Equal(t, span.SpanContext().TraceID(), trace.SpanContextFromContext(rctx).TraceID())
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	_, err := messaging.Decode([]byte{0xff, 0x01})
	require.ErrorIs(t, err, messaging.ErrInvalidEvent)
	_, err = messaging.Decode(nil)
	require.ErrorIs(t, err, messaging.ErrInvalidEvent)
}

func TestValidToken(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "a.b", "a*", "a>", "a b", "ACME", "-x"} {
		require.False(t, messaging.ValidToken(bad), bad)
	}
	require.True(t, messaging.ValidToken("acme-2_x"))
	require.True(t, messaging.ValidToken(strings.Repeat("a", 63)))
	require.False(t, messaging.ValidToken(strings.Repeat("a", 64)))
	// The loop agrees with the pattern it implements.
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	alphabet := "az09_-.A *>\x00é"
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, rnd.IntN(70))
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		require.Equal(t, re.MatchString(string(b)), messaging.ValidToken(string(b)), "%q", b)
	}
}
