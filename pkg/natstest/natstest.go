// Package natstest starts an in-process JetStream server for a test.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/vomosync/vomosync/pkg/natsserver"
)

// Start runs a JetStream server on a random loopback port with its store in
// t.TempDir, shut down at cleanup. It returns the client URL and the server
// (tests restart or stop it to inject faults).
func Start(t testing.TB) (string, *server.Server) {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv.ClientURL(), srv
}
