// Package telemetry owns tracing setup (OTLP export, W3C propagation) and the
// admin HTTP server every service exposes: /metrics, /healthz, /readyz.
package telemetry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/vomosync/vomosync/pkg/httpserve"
)

// SetupTracing installs the global tracer provider and propagator. With an
// empty endpoint spans are still created (trace ids reach logs and audit rows)
// but nothing is exported. The returned func flushes; call it last.
func SetupTracing(ctx context.Context, service, endpoint string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	res := resource.NewSchemaless(semconv.ServiceName(service))
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if endpoint != "" {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint+"/v1/traces"))
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// NewRegistry returns a Prometheus registry with Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// ReadyFunc reports whether the service can do its work (nil = ready).
type ReadyFunc func(ctx context.Context) error

// Admin serves /metrics, /healthz (process alive) and /readyz (dependencies ok).
type Admin struct {
	Addr     string
	Registry *prometheus.Registry
	Ready    ReadyFunc
	// Extra handlers mounted on the admin mux (e.g. simulator control).
	Extra map[string]http.Handler
	ln    net.Listener
}

// Listen binds the address early so callers (and tests) learn the real port.
func (a *Admin) Listen() (string, error) {
	ln, err := net.Listen("tcp", a.Addr)
	if err != nil {
		return "", fmt.Errorf("admin listen %s: %w", a.Addr, err)
	}
	a.ln = ln
	return ln.Addr().String(), nil
}

// Run serves until ctx is cancelled.
func (a *Admin) Run(ctx context.Context) error {
	if a.ln == nil {
		if _, err := a.Listen(); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{Registry: a.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if a.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := a.Ready(ctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	for p, h := range a.Extra {
		mux.Handle(p, h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := httpserve.Run(ctx, srv, a.ln, 5*time.Second); err != nil {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}
