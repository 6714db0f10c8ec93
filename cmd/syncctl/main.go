// Command syncctl is the operator CLI of vomosync: migrations, customers,
// status, checkpoints, dead letters, reconciliation, replay and the demo.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/vomosync/vomosync/cmd/syncctl/internal/cli"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.Execute(ctx, version, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
