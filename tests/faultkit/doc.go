// Package faultkit holds the fault injectors the chaos suite drives:
//
//   - Proxy, a TCP proxy on loopback between a service and one of its peers
//     (NATS, PostgreSQL, the VOMO API, an HTTP destination) that adds latency
//     with jitter, partitions (bytes held, as TCP holds them while a network
//     is cut, on existing and new connections) and resets (RST), per
//     direction. It refuses non-loopback upstreams.
//   - Statement faults in a real PostgreSQL: a trigger that raises
//     serialization failures (40001) or deadlocks (40P01) on a share of the
//     statements writing chosen tables, installed and removed at run time.
//   - Terminator, which cuts a share of an application's PostgreSQL
//     connections with pg_terminate_backend.
//
// Process kills at instrumented points and clock skew live in the services
// themselves (pkg/faults: VOMOSYNC_FAULTS, VOMOSYNC_CLOCK_SKEW).
package faultkit
