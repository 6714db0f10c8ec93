//go:build unix

package faults

import (
	"os"
	"syscall"
)

// killSelf is a real kill -9: no deferred function, no flush, no drain runs.
// The signal is delivered asynchronously, so the goroutine parks until it lands.
func killSelf() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
