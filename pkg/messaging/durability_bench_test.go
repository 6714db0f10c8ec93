package messaging_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/natsserver"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

// BenchmarkPublishDurability measures what fsync on every write costs a
// batch publish (the poller's path): go test -bench PublishDurability ./messaging/
func BenchmarkPublishDurability(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync_always=%v", sync), func(b *testing.B) {
			srv, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: b.TempDir(), SyncAlways: sync})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			ctx := context.Background()
			nc, js, err := messaging.Connect(ctx, srv.ClientURL(), "bench", 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			if err := messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1}); err != nil {
				b.Fatal(err)
			}
			raw := make([]byte, 580)
			b.ResetTimer()
			batch := messaging.NewBatch(js)
			for i := range b.N {
				ev := &eventsv1.ChangeEvent{CustomerId: "acme", Resource: "users", RecordId: fmt.Sprint(i),
					Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.Now(), Record: raw}
				m, _ := messaging.NewMsg(ctx, ev, messaging.MsgID(ev, ""))
				if err := batch.Add(m); err != nil {
					b.Fatal(err)
				}
				if batch.Len() == 1000 {
					if _, err := batch.Wait(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if _, err := batch.Wait(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
