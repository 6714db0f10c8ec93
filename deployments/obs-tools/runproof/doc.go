// Package runproof proves, against a real run of the pipeline, what cannot
// be checked statically: one trace holds the poller's publish and the
// processor's write of a record (read back from a real Jaeger), and every
// poll, process and reconcile operation logs one JSON line whose fields
// match the database rows of the same operation. `make jaeger-proof` runs it.
package runproof
