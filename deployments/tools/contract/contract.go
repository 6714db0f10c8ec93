// Package contract is what the deployment files promise each vomosync binary:
// the environment it reads, the secrets among it, and the network it needs.
// The compose check and the Kubernetes policy tests hold the manifests to it,
// so a variable added here and forgotten in a manifest fails validation.
package contract

// Ports the binaries listen on or dial.
const (
	AdminPort    = 8081 // /metrics /healthz /readyz on every binary
	ConsolePort  = 8080
	SimPort      = 8090
	PostgresPort = 5432
	NATSPort     = 4222
	OTLPPort     = 4318 // OTLP/HTTP to the collector (Jaeger in compose)
	HTTPSPort    = 443  // the VOMO API
	DNSPort      = 53
)

// Binary is one deployable.
type Binary struct {
	Name string
	// Module is the Dockerfile's SERVICE argument.
	Module string
	// Env must be set (from config or secret); Secrets is the subset that
	// must come from a secret store, never a literal in a manifest.
	Env     []string
	Secrets []string
	// Egress lists the TCP ports it dials besides DNS.
	Egress []int
	// CallsVOMO: it reads the VOMO API (port 443; the simulator in dev).
	CallsVOMO bool
	// Ingress lists the TCP ports others call, besides the admin port.
	Ingress []int
	// DrainEnv names the variable bounding its graceful stop, if any: the
	// termination grace period must outlast it.
	DrainEnv string
	// OneShot binaries run to completion (the migration) and have no probes.
	OneShot bool
}

var common = []string{"LOG_LEVEL", "ADMIN_ADDR", "OTEL_EXPORTER_OTLP_ENDPOINT", "DATABASE_URL", "NATS_URL", "JS_REPLICAS", "JS_DUPLICATE_WINDOW"}

func with(extra ...string) []string { return append(append([]string{}, common...), extra...) }

// Binaries lists every image the Dockerfile builds.
var Binaries = []Binary{
	{
		Name: "poller", Module: "services/poller",
		Env:       with("VOMOSYNC_KEK", "POLLER_CONCURRENCY", "POLLER_LEASE"),
		Secrets:   []string{"DATABASE_URL", "NATS_URL", "VOMOSYNC_KEK"},
		Egress:    []int{PostgresPort, NATSPort, OTLPPort, HTTPSPort},
		CallsVOMO: true,
	},
	{
		Name: "processor", Module: "services/processor",
		Env:     with("PROCESSOR_BATCH_SIZE", "PROCESSOR_WORKERS", "PROCESSOR_DRAIN_TIMEOUT"),
		Secrets: []string{"DATABASE_URL", "NATS_URL"},
		// HTTPS to customers' webhook destinations (and 5432 to Postgres ones).
		Egress:   []int{PostgresPort, NATSPort, OTLPPort, HTTPSPort},
		DrainEnv: "PROCESSOR_DRAIN_TIMEOUT",
	},
	{
		Name: "reconciler", Module: "services/reconciler",
		Env:       with("VOMOSYNC_KEK", "RECONCILER_GAP_THRESHOLD"),
		Secrets:   []string{"DATABASE_URL", "NATS_URL", "VOMOSYNC_KEK"},
		Egress:    []int{PostgresPort, NATSPort, OTLPPort, HTTPSPort},
		CallsVOMO: true,
	},
	{
		Name: "console", Module: "services/console",
		Env:     with("CONSOLE_ADDR", "CONSOLE_SESSION_KEY"),
		Secrets: []string{"DATABASE_URL", "NATS_URL", "CONSOLE_SESSION_KEY"},
		Egress:  []int{PostgresPort, NATSPort, OTLPPort},
		Ingress: []int{ConsolePort},
	},
	{
		// The VOMO API simulator: dev and demo only, needs no database or NATS.
		Name: "vomosim", Module: "services/vomosim",
		Env:     []string{"LOG_LEVEL", "ADMIN_ADDR", "OTEL_EXPORTER_OTLP_ENDPOINT", "SIM_ADDR", "SIM_SCENARIO"},
		Egress:  []int{OTLPPort},
		Ingress: []int{SimPort},
	},
	{
		// `syncctl migrate`: applies the Postgres migrations, then exits. It
		// runs as the schema owner, the services as DML-only roles.
		Name: "migrate", Module: "cmd/syncctl",
		Env:     []string{"DATABASE_URL"},
		Secrets: []string{"DATABASE_URL"},
		Egress:  []int{PostgresPort},
		OneShot: true,
	},
}

// Lookup returns the binary called name.
func Lookup(name string) (Binary, bool) {
	for _, b := range Binaries {
		if b.Name == name {
			return b, true
		}
	}
	return Binary{}, false
}
