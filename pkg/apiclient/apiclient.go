// Package apiclient builds a customer's VOMO client the same way for every
// caller (poller, reconciler, syncctl): on the customer's shared request
// budget, with its Retry-After cap, reporting to the API metrics.
package apiclient

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vomosync/vomosync/pkg/budget"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/vomo"
)

// New builds the customer's VOMO client on its shared budget.
func New(db *pgxpool.Pool, cust customer.Customer, token string, api *metrics.API, extra ...vomo.Option) (*vomo.Client, error) {
	eff := cust.Settings.Effective()
	b := budget.New(db, cust.ID, eff.BudgetPerMinute, eff.BudgetBurst)
	opts := []vomo.Option{vomo.WithLimiter(b), vomo.WithRetryAfterCap(eff.RetryAfterCap.D())}
	if api != nil {
		b.OnWait = func(d time.Duration) { api.BudgetWait.WithLabelValues(cust.ID).Add(d.Seconds()) }
		opts = append(opts, vomo.WithObserver(observer{api: api, customer: cust.ID}))
	}
	cl, err := vomo.New(cust.APIBaseURL, token, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("vomo client for %s: %w", cust.ID, err)
	}
	return cl, nil
}

type observer struct {
	api      *metrics.API
	customer string
}

func (o observer) ObserveRequest(endpoint string, status int, d time.Duration) {
	o.api.Requests.WithLabelValues(o.customer, endpoint, fmt.Sprint(status)).Inc()
	o.api.Latency.WithLabelValues(endpoint).Observe(d.Seconds())
}

func (o observer) ObserveThrottle(d time.Duration) {
	o.api.ThrottleSeconds.WithLabelValues(o.customer).Add(d.Seconds())
}
