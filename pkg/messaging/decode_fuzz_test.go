package messaging_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/messaging"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

func validEvent(t testing.TB, record []byte) []byte {
	b, err := proto.Marshal(&eventsv1.ChangeEvent{CustomerId: "acme", Resource: "users", RecordId: "1",
		Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.Now(), Record: record})
	require.NoError(t, err)
	return b
}

func TestDecodeSizeCap(t *testing.T) {
	t.Parallel()
	_, err := messaging.Decode(validEvent(t, make([]byte, messaging.MaxEventBytes-1024)))
	require.NoError(t, err)
	_, err = messaging.Decode(validEvent(t, make([]byte, messaging.MaxEventBytes)))
	require.ErrorIs(t, err, messaging.ErrEventTooLarge)
	require.ErrorIs(t, err, messaging.ErrInvalidEvent, "dead-lettered at once like any invalid event")
}

func FuzzDecode(f *testing.F) {
	f.Add(validEvent(f, []byte(`{"id":1}`)))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := messaging.Decode(data)
		if err != nil {
			if !errors.Is(err, messaging.ErrInvalidEvent) {
				t.Fatalf("error does not wrap ErrInvalidEvent: %v", err)
			}
			return
		}
		if !messaging.ValidToken(ev.GetCustomerId()) || !messaging.ValidToken(ev.GetResource()) || ev.GetRecordId() == "" ||
			ev.GetSourceUpdatedAt() == nil {
			t.Fatalf("accepted an incomplete event: %v", ev)
		}
	})
}
