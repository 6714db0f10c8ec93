package sim

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// Scenario is a YAML file describing a customer set, data sizes, change
// rates and faults, shared by tests, the demo and benchmarks.
type Scenario struct {
	Seed      int64              `yaml:"seed"`
	BaseURL   string             `yaml:"base_url"`
	Customers []ScenarioCustomer `yaml:"customers"`
}

// ScenarioCustomer is one customer of a scenario.
type ScenarioCustomer struct {
	CustomerSpec `yaml:",inline"`
	Faults       Faults    `yaml:"faults"`
	Changes      []Rates   `yaml:"changes"`
	Webhooks     *Webhooks `yaml:"webhooks"`
}

// LoadScenario reads and parses a scenario file.
func LoadScenario(path string) (Scenario, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- the scenario file the operator named
	if err != nil {
		return Scenario{}, fmt.Errorf("scenario: %w", err)
	}
	sc, err := ParseScenario(b)
	if err != nil {
		return Scenario{}, fmt.Errorf("scenario %s: %w", path, err)
	}
	return sc, nil
}

// ParseScenario parses scenario YAML; unknown keys are errors.
func ParseScenario(b []byte) (Scenario, error) {
	var sc Scenario
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&sc); err != nil {
		return sc, err
	}
	return sc, nil
}

// Options returns the simulator options the scenario asks for.
func (sc Scenario) Options() Options {
	return Options{Seed: sc.Seed, BaseURL: sc.BaseURL}
}

// Apply adds the scenario's customers with their faults and starts their
// change generators, which run until ctx ends.
func (s *Sim) Apply(ctx context.Context, sc Scenario) error {
	for _, c := range sc.Customers {
		if err := s.AddCustomer(c.CustomerSpec); err != nil {
			return err
		}
		if err := s.SetFaults(c.ID, c.Faults); err != nil {
			return fmt.Errorf("faults of %s: %w", c.ID, err)
		}
		if c.Webhooks != nil {
			if err := s.SetWebhooks(c.ID, c.Webhooks); err != nil {
				return fmt.Errorf("webhooks of %s: %w", c.ID, err)
			}
		}
		for _, r := range c.Changes {
			if err := s.StartChanges(ctx, c.ID, r); err != nil {
				return fmt.Errorf("changes of %s: %w", c.ID, err)
			}
		}
	}
	return nil
}
