// Package service owns what every binary's main does the same way: the
// -healthcheck flag (distroless images have no curl), a context cancelled
// by SIGINT/SIGTERM, and exiting 1 with the error.
package service

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vomosync/vomosync/pkg/telemetry"
)

// Main runs run under a context cancelled by SIGINT or SIGTERM, or, with
// -healthcheck, checks /healthz on ADMIN_ADDR (default :8081) and exits.
func Main(name string, run func(ctx context.Context) error) {
	health := flag.Bool("healthcheck", false, "GET /healthz on ADMIN_ADDR and exit 0 (ok) or 1")
	flag.Parse()
	if *health {
		addr := os.Getenv("ADMIN_ADDR")
		if addr == "" {
			addr = ":8081"
		}
		if err := telemetry.Healthcheck(addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
