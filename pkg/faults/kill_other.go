//go:build !unix

package faults

import "os"

// killSelf ends the process at once without running deferred functions.
func killSelf() { os.Exit(137) }
