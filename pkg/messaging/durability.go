package messaging

import "fmt"

// DurabilityWarnings lists where s is weaker than the production profile
// (docs/durability.md): three replicas, and a duplicate window long enough
// to absorb a poller's overlap re-reads. Services log them at start.
func DurabilityWarnings(s Settings) []string {
	var w []string
	if s.Replicas < 3 {
		w = append(w, fmt.Sprintf("JS_REPLICAS=%d: streams survive no server loss; production runs 3 (R3)", s.Replicas))
	}
	if s.DuplicateWindow < 2*60*1e9 {
		w = append(w, fmt.Sprintf("JS_DUPLICATE_WINDOW=%s is under the 2m production profile", s.DuplicateWindow))
	}
	return w
}
