// Command natsd runs the embedded JetStream server (pkg/natsserver) as its own
// process, so the chaos suite can kill -9 it for real and start it again on
// the same port and file store.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vomosync/vomosync/pkg/natsserver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "natsd:", err)
		os.Exit(1)
	}
}

func run() error {
	port := flag.Int("port", -1, "client port (-1 picks a free one)")
	store := flag.String("store", "", "JetStream file store directory (required)")
	syncAlways := flag.Bool("sync-always", false, "fsync every write")
	flag.Parse()
	srv, err := natsserver.Start(natsserver.Options{Port: *port, StoreDir: *store, SyncAlways: *syncAlways})
	if err != nil {
		return err
	}
	// Server log to stderr (the harness keeps it): what the server did
	// when its store filled up or it recovered after a kill.
	srv.ConfigureLogger()
	// The harness waits for this line before it hands the URL out.
	fmt.Println("ready", srv.ClientURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Shutdown()
	srv.WaitForShutdown()
	return nil
}
