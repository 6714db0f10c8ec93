package sim

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration that reads and writes as "1m30s" in JSON and YAML.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "1m30s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return d.set(v)
}

// UnmarshalText accepts "1m30s" (YAML scalars arrive this way).
func (d *Duration) UnmarshalText(b []byte) error { return d.set(string(b)) }

func (d *Duration) set(v any) error {
	switch x := v.(type) {
	case float64:
		*d = Duration(x * float64(time.Second))
	case string:
		p, err := time.ParseDuration(x)
		if err != nil {
			return fmt.Errorf("duration %q: %w", x, err)
		}
		*d = Duration(p)
	default:
		return fmt.Errorf("duration: unexpected %T", v)
	}
	return nil
}

// Faults is the behaviour profile of one customer. Zero means a well-behaved
// API with the documented defaults.
type Faults struct {
	// ClockSkew shifts the customer's clock (Date header, new updated_at values).
	ClockSkew Duration `json:"clock_skew" yaml:"clock_skew"`
	// Order of list results: "id" (default) or "updated_at".
	Order string `json:"order" yaml:"order"`
	// Wire selects the JSON variants sent.
	Wire WireFormat `json:"wire" yaml:"wire"`
}

// SetFaults replaces the customer's behaviour profile.
func (s *Sim) SetFaults(customerID string, f Faults) error {
	c, err := s.customer(customerID)
	if err != nil {
		return err
	}
	if f.Order != "" && f.Order != "id" && f.Order != "updated_at" {
		return fmt.Errorf("order %q: want id or updated_at", f.Order)
	}
	c.mu.Lock()
	c.faults = f
	c.mu.Unlock()
	return nil
}

// GetFaults returns the customer's behaviour profile.
func (s *Sim) GetFaults(customerID string) (Faults, error) {
	c, err := s.customer(customerID)
	if err != nil {
		return Faults{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.faults, nil
}
