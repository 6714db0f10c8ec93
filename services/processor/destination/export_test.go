package destination

// NewClientResolving is newClient for tests that answer DNS themselves.
var NewClientResolving = newClient
