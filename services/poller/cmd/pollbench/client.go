package main

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vomosync/vomosync/pkg/apiclient"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/services/poller/poll"
)

func runnerNewClient(pool *pgxpool.Pool, c customer.Customer, tok string) (poll.Source, error) {
	return apiclient.New(pool, c, tok, nil)
}
