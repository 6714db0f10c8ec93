// Package runner turns a claimed pair into a cycle: it loads the customer,
// builds its VOMO client on the shared budget, runs the cycle, and pauses
// the customer when VOMO rejects its token.
package runner

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/apiclient"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/vomo"
	"github.com/vomosync/vomosync/services/poller/internal/schedule"
	"github.com/vomosync/vomosync/services/poller/poll"
)

// Runner runs the cycle of one claim.
type Runner struct {
	DB        *pgxpool.Pool
	JS        jetstream.JetStream
	Customers *customer.Store
	Cycler    *poll.Cycler
	API       *metrics.API
	Poller    *metrics.Poller
	Log       zerolog.Logger
	// ClientOptions are added to every VOMO client (tests shorten backoffs).
	ClientOptions []vomo.Option
}

// Run implements schedule.RunFunc.
func (r *Runner) Run(ctx context.Context, c schedule.Claim) string {
	res, err := r.run(ctx, c)
	if err != nil && res == nil {
		r.Log.Error().Err(err).Str(logging.FCustomerID, c.CustomerID).Str(logging.FResource, c.Resource).Msg("cycle not started")
		return poll.OutcomeFailed
	}
	return res.Outcome
}

func (r *Runner) run(ctx context.Context, c schedule.Claim) (*poll.Result, error) {
	cust, err := r.Customers.Get(ctx, c.CustomerID)
	if err != nil {
		return nil, err
	}
	token, err := r.Customers.Token(ctx, c.CustomerID)
	if err != nil {
		return nil, err
	}
	client, err := apiclient.New(r.DB, cust, token, r.API, r.ClientOptions...)
	if err != nil {
		return nil, err
	}
	res, err := r.Cycler.Run(ctx, poll.Request{Customer: cust, Resource: c.Resource, Source: client, Sink: poll.NewJetStreamSink(r.JS)})
	if reason := messaging.FailureReason(err); reason != "" && r.Poller != nil {
		r.Poller.PublishFailures.WithLabelValues(reason).Inc()
	}
	if errors.Is(err, vomo.ErrUnauthorized) || errors.Is(err, vomo.ErrForbidden) {
		reason := "VOMO rejected the API token (401): revoked or rotated; set the new one with `syncctl customers set-token`"
		if errors.Is(err, vomo.ErrForbidden) {
			reason = "VOMO answered 403: the token lacks scope for " + c.Resource + "; ask the customer's admin"
		}
		if perr := r.Customers.SetStatus(context.WithoutCancel(ctx), cust.ID, "paused", reason); perr != nil {
			r.Log.Error().Err(perr).Str(logging.FCustomerID, cust.ID).Msg("pause customer")
		}
		if r.Poller != nil {
			r.Poller.CustomerPaused.WithLabelValues(cust.ID, "auth").Set(1)
		}
		r.Log.Error().Ctx(ctx).Str(logging.FCustomerID, cust.ID).Str("reason", reason).Msg("customer paused")
	}
	return res, err
}
