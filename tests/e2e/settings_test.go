package e2e

import "github.com/vomosync/vomosync/pkg/customer"

func settingsDefaults() customer.Settings { return customer.Settings{} }
