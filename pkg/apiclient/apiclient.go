// Package apiclient builds a customer's VOMO client the same way for every
// caller (poller, reconciler, syncctl): on the customer's shared request
// budget, with its Retry-After cap, reporting to the API metrics.
package apiclient

import (
	"context"
	"fmt"
	"net/http"
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
	}
	opts = append(opts, vomo.WithObserver(observer{api: api, db: db, customer: cust.ID}))
	cl, err := vomo.New(cust.APIBaseURL, token, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("vomo client for %s: %w", cust.ID, err)
	}
	return cl, nil
}

// observer counts every request and records each failed one in
// vomosync.api_errors ("API errors in the last hour" for syncctl and the console).
type observer struct {
	api      *metrics.API
	db       *pgxpool.Pool
	customer string
}

func (o observer) ObserveRequest(endpoint string, status int, d time.Duration) {
	if o.api != nil {
		o.api.Requests.WithLabelValues(o.customer, endpoint, fmt.Sprint(status)).Inc()
		o.api.Latency.WithLabelValues(endpoint).Observe(d.Seconds())
	}
	if status >= 200 && status < 400 || o.db == nil {
		return
	}
	// Best effort and off the request path: a slow database must not slow
	// polling, and a lost error row is only a weaker report.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		msg := http.StatusText(status)
		if status == 0 {
			msg = "network error (timeout, reset or refused)"
		}
		_, _ = o.db.Exec(ctx, `INSERT INTO vomosync.api_errors (customer_id, endpoint, status, error) VALUES ($1, $2, $3, $4)`,
			o.customer, endpoint, status, msg)
	}()
}

func (o observer) ObserveThrottle(d time.Duration) {
	if o.api != nil {
		o.api.ThrottleSeconds.WithLabelValues(o.customer).Add(d.Seconds())
	}
}
