// Package chaos runs the whole system under injected faults and checks every
// record against the source truth.
package chaos
