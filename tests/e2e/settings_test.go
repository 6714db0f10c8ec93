package e2e

import "github.com/vomosync/vomosync/pkg/customer"

// settingsDefaults: the churn deletes about 1% of the records, which a real
// customer would see as a gap rate worth holding for; here repair proceeds.
func settingsDefaults() customer.Settings {
	return customer.Settings{Reconcile: customer.Reconcile{GapThreshold: 0.5}}
}
