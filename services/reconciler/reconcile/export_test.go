package reconcile

// CompareFields exposes compareFields to the external tests.
var CompareFields = compareFields
