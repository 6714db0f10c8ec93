// Package deploytest holds the deployment files to what they promise, with
// no Docker engine or cluster: the rendered Kubernetes overlays (probes,
// limits, grace periods, disruption budgets, network policies, scaling,
// secrets only by reference), the NATS permissions (each service's real
// JetStream calls succeed and nothing more), and the Prometheus and Grafana
// files the compose stack mounts.
package deploytest
