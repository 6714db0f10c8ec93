package messaging_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/natstest"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

// TestPublishFailureReasons: a full stream refuses publishes (nothing older is
// dropped) and the failure says storage_full; no stream at all is unavailable.
func TestPublishFailureReasons(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, _ := natstest.Start(t)
	nc, js, err := messaging.Connect(ctx, url, "test", 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()

	publish := func(n int) (int, error) {
		b := messaging.NewBatch(js)
		for i := range n {
			ev := &eventsv1.ChangeEvent{CustomerId: "acme", Resource: "users", RecordId: strings.Repeat("x", 10) + string(rune('a'+i%26)) + time.Now().Format("150405.000000000"),
				Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.New(time.Unix(int64(100+i), 0)),
				Origin: eventsv1.Origin_ORIGIN_POLL, Record: []byte(`{"id":1,"bio":"` + strings.Repeat("b", 400) + `"}`)}
			m, err := messaging.NewMsg(ctx, ev, messaging.MsgID(ev, ""))
			require.NoError(t, err)
			if err := b.Add(m); err != nil {
				return 0, err
			}
		}
		return b.Wait(ctx)
	}

	_, err = publish(1)
	require.Error(t, err)
	require.Equal(t, messaging.FailUnavailable, messaging.FailureReason(err), "no stream: %v", err)

	// A stream created by an earlier version (discard old) is updated in place.
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: messaging.StreamChanges, Subjects: []string{messaging.ChangesPrefix + ".>"},
		Storage: jetstream.FileStorage, Discard: jetstream.DiscardOld, Duplicates: time.Minute})
	require.NoError(t, err)
	require.NoError(t, messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: 8 << 10}))
	acked, err := publish(40)
	require.Error(t, err, "40 events of ~0.5 KiB do not fit in 8 KiB")
	require.Equal(t, messaging.FailStorageFull, messaging.FailureReason(err), "full stream: %v", err)
	st, err2 := js.Stream(ctx, messaging.StreamChanges)
	require.NoError(t, err2)
	info, err2 := st.Info(ctx)
	require.NoError(t, err2)
	require.EqualValues(t, 1, info.State.FirstSeq, "the oldest events were kept, not discarded")
	require.EqualValues(t, acked, info.State.Msgs, "the acked prefix is what the stream holds")
	require.Empty(t, messaging.FailureReason(context.Canceled), "not a publish failure")
}
