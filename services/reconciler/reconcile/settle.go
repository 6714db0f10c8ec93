package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vomosync/vomosync/pkg/messaging"
)

// settle waits, up to SettleTimeout, until the processor's consumer has
// acknowledged the last change event published for the pair before the run,
// so records the poller handed on but the processor has not applied yet are
// not reported as gaps. It returns a note when it could not wait it out;
// candidates are re-verified after the walk either way.
func (r *Reconciler) settle(ctx context.Context, cust, resource string) string {
	st, err := r.JS.Stream(ctx, messaging.StreamChanges)
	if err != nil {
		return fmt.Sprintf("processor progress unknown: %v", err)
	}
	last, err := st.GetLastMsgForSubject(ctx, messaging.ChangeSubject(cust, resource))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return ""
	}
	if err != nil {
		return fmt.Sprintf("processor progress unknown: %v", err)
	}
	cons, err := st.Consumer(ctx, messaging.ConsumerName)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return "no processor consumer yet: published events are not applied"
	}
	if err != nil {
		return fmt.Sprintf("processor progress unknown: %v", err)
	}
	deadline := time.Now().Add(r.settleTimeout())
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Sprintf("processor progress unknown: %v", err)
		}
		if info.AckFloor.Stream >= last.Sequence || (info.NumPending == 0 && info.NumAckPending == 0) {
			return ""
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("processor still behind after %s (ack floor %d, last event %d): some missing/stale may be in flight",
				r.settleTimeout(), info.AckFloor.Stream, last.Sequence)
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(100 * time.Millisecond):
		}
	}
}
