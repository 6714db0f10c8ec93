package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/vomosync/vomosync/pkg/config"
	"github.com/vomosync/vomosync/pkg/messaging"
)

// bar returns a progress bar when stdout is a terminal and the output is a
// table; otherwise nil, and every method of the helpers below is a no-op,
// so JSON output and pipes stay quiet. max < 0 is a spinner (total unknown).
func (a *app) bar(max int, what string) *progressbar.ProgressBar {
	f, ok := a.out.(*os.File)
	if !ok || a.output != "table" || !term.IsTerminal(int(f.Fd())) { // #nosec G115 -- a file descriptor
		return nil
	}
	return progressbar.NewOptions(max, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetElapsedTime(true), progressbar.OptionShowIts())
}

func barSet(b *progressbar.ProgressBar, n int) {
	if b != nil {
		_ = b.Set(n)
	}
}

func barMax(b *progressbar.ProgressBar, n int) {
	if b != nil && int(b.GetMax64()) != n {
		b.ChangeMax(n)
	}
}

func barDone(b *progressbar.ProgressBar) {
	if b != nil {
		_ = b.Finish()
		_ = b.Clear()
	}
}

// jetStream connects to NATS_URL for commands that publish.
func (a *app) jetStream(ctx context.Context) (*nats.Conn, jetstream.JetStream, error) {
	ns, err := config.Parse[struct{ NATS messaging.Settings }]()
	if err != nil {
		return nil, nil, err
	}
	if ns.NATS.URL == "" {
		return nil, nil, errors.New("NATS_URL is required to publish (e.g. nats://127.0.0.1:4222)")
	}
	return messaging.Connect(ctx, ns.NATS.URL, "syncctl", ns.NATS.ConnectTimeout)
}

// confirmOn asks on w (stderr when stdout carries JSON or a table to keep).
func (a *app) confirmOn(w io.Writer) bool {
	fmt.Fprint(w, "proceed? [y/N] ")
	var s string
	_, _ = fmt.Fscanln(a.in, &s)
	return s == "y" || s == "yes"
}
