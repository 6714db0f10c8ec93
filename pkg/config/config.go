// Package config parses a service's configuration from the environment once,
// then validates the rules that span fields. Errors name the variable.
package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Validator is implemented by config structs with cross-field rules.
type Validator interface {
	Validate() error
}

// Parse reads T from the process environment and validates it.
func Parse[T any]() (T, error) {
	return ParseFrom[T](nil)
}

// ParseFrom reads T from environ (KEY=VALUE pairs; nil means the process
// environment) and validates it. Tests use it to avoid touching os.Environ.
func ParseFrom[T any](environ map[string]string) (T, error) {
	opts := env.Options{}
	if environ != nil {
		opts.Environment = environ
	}
	cfg, err := env.ParseAsWithOptions[T](opts)
	if err != nil {
		return cfg, fmt.Errorf("configuration: %w", flatten(err, envKeys(reflect.TypeFor[T](), "")))
	}
	if v, ok := any(&cfg).(Validator); ok {
		if err := v.Validate(); err != nil {
			return cfg, fmt.Errorf("configuration: %w", err)
		}
	}
	return cfg, nil
}

// flatten turns env's aggregate error into one line per variable, naming the
// variable where env only names the Go field.
func flatten(err error, keys map[string]string) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			msgs = append(msgs, fmt.Sprintf("%s: cannot parse as %s: %v", keys[pe.Name], pe.Type, pe.Err))
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}

// envKeys maps Go field names to their environment variable names.
func envKeys(t reflect.Type, prefix string) map[string]string {
	out := map[string]string{}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
			for k, v := range envKeys(f.Type, prefix+f.Tag.Get("envPrefix")) {
				out[k] = v
			}
			continue
		}
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
			out[f.Name] = prefix + key
		}
	}
	return out
}

// Common is the block every service shares.
type Common struct {
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":8081"`
	// OTLPEndpoint enables trace export (OTLP/HTTP) when set, e.g. http://jaeger:4318.
	OTLPEndpoint string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
}

// Validate checks the shared block.
func (c Common) Validate() error {
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("LOG_LEVEL=%q: want one of trace, debug, info, warn, error", c.LogLevel)
	}
	return nil
}
