package deploytest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vomosync/vomosync/deployments/tools/contract"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/metrics"
)

// binaries returns the contract binaries an overlay deploys: all of them,
// but the simulator only in dev.
func binaries(m *manifest) []contract.Binary {
	var out []contract.Binary
	for _, b := range contract.Binaries {
		if b.Name == "vomosim" && m.overlay != "dev" {
			continue
		}
		out = append(out, b)
	}
	return out
}

func TestOverlayDeploysEveryBinaryInOneNamespace(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		for _, b := range binaries(m) {
			_, ok := m.workload(b.Name)
			assert.True(t, ok, "no Deployment or Job %q", b.Name)
		}
		if m.overlay == "prod" {
			_, ok := m.deployments["vomosim"]
			assert.False(t, ok, "the simulator must not reach production")
		}
		assert.Len(t, m.namespaces, 1, "every object in the overlay's namespace: %v", m.namespaces)
		assert.Zero(t, m.kinds["Secret"], "secrets are created out of band, never rendered from the repository")
	})
}

func TestEnvironmentMatchesContract(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		for _, b := range binaries(m) {
			w, ok := m.workload(b.Name)
			if !ok {
				continue
			}
			c := w.pod.Containers[0]
			provided := map[string]corev1.EnvVar{}
			for _, from := range c.EnvFrom {
				require.NotNil(t, from.ConfigMapRef, "%s: envFrom only for ConfigMaps; secrets by key", b.Name)
				cm, ok := m.configMaps[from.ConfigMapRef.Name]
				require.True(t, ok, "%s: ConfigMap %s not in the overlay", b.Name, from.ConfigMapRef.Name)
				for k, v := range cm.Data {
					provided[k] = corev1.EnvVar{Name: k, Value: v}
				}
			}
			for _, e := range c.Env {
				provided[e.Name] = e
			}
			for _, key := range b.Env {
				e, ok := provided[key]
				if !assert.True(t, ok, "%s: %s is not set", b.Name, key) {
					continue
				}
				if slices.Contains(b.Secrets, key) {
					ok := e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Key == key
					assert.True(t, ok, "%s: %s must come from a Secret key of the same name, never a literal", b.Name, key)
				} else {
					assert.NotEmpty(t, e.Value+valueFromString(e), "%s: %s is empty", b.Name, key)
				}
			}
		}
	})
}

func valueFromString(e corev1.EnvVar) string {
	if e.ValueFrom != nil {
		return "ref"
	}
	return ""
}

func TestPodsAreHardened(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		for _, w := range m.workloads() {
			p := w.pod
			assert.Equal(t, w.name, p.ServiceAccountName, "%s: a ServiceAccount of its own", w.name)
			_, ok := m.serviceAccounts[p.ServiceAccountName]
			assert.True(t, ok, "%s: ServiceAccount %s not in the overlay", w.name, p.ServiceAccountName)
			assert.Equal(t, ptrFalse, p.AutomountServiceAccountToken, "%s: no API token (nothing talks to the Kubernetes API)", w.name)
			require.NotNil(t, p.SecurityContext, w.name)
			assert.Equal(t, ptrTrue, p.SecurityContext.RunAsNonRoot, "%s: runAsNonRoot", w.name)
			for _, c := range p.Containers {
				name := w.name + "/" + c.Name
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					assert.False(t, c.Resources.Requests.Name(r, "").IsZero(), "%s: no %s request", name, r)
					assert.False(t, c.Resources.Limits.Name(r, "").IsZero(), "%s: no %s limit", name, r)
				}
				tag := c.Image[strings.LastIndex(c.Image, ":")+1:]
				assert.True(t, strings.Contains(c.Image, ":") && tag != "latest", "%s: image %q needs a pinned tag", name, c.Image)
				sc := c.SecurityContext
				if assert.NotNil(t, sc, "%s: securityContext", name) {
					assert.Equal(t, ptrFalse, sc.AllowPrivilegeEscalation, "%s", name)
					assert.Equal(t, ptrTrue, sc.ReadOnlyRootFilesystem, "%s", name)
					assert.True(t, sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL"), "%s: drop ALL capabilities", name)
				}
			}
		}
	})
}

var (
	yes, no  = true, false
	ptrTrue  = &yes
	ptrFalse = &no
)

func TestProbesUseTheAdminPort(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		for _, b := range binaries(m) {
			if b.OneShot {
				continue
			}
			d, ok := m.deployments[b.Name]
			if !ok {
				continue
			}
			c := d.Spec.Template.Spec.Containers[0]
			admin := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "admin" })
			if assert.GreaterOrEqual(t, admin, 0, "%s: no port named admin", b.Name) {
				assert.EqualValues(t, contract.AdminPort, c.Ports[admin].ContainerPort, "%s: admin port", b.Name)
			}
			for probe, path := range map[*corev1.Probe]string{c.StartupProbe: "/healthz", c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
				if !assert.NotNil(t, probe, "%s: missing a %s probe", b.Name, path) || !assert.NotNil(t, probe.HTTPGet, b.Name) {
					continue
				}
				assert.Equal(t, path, probe.HTTPGet.Path, b.Name)
				assert.Equal(t, "admin", probe.HTTPGet.Port.String(), "%s: probe %s on the admin port", b.Name, path)
			}
		}
	})
}

func TestGracePeriodOutlastsDrain(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		for _, b := range binaries(m) {
			d, ok := m.deployments[b.Name]
			if !ok || b.DrainEnv == "" {
				continue
			}
			drain := configValue(t, m, d, b.DrainEnv)
			timeout, err := time.ParseDuration(drain)
			require.NoError(t, err, "%s: %s=%q", b.Name, b.DrainEnv, drain)
			grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
			require.NotNil(t, grace, "%s: terminationGracePeriodSeconds", b.Name)
			// Drain, then close NATS and the pool and flush traces.
			assert.GreaterOrEqual(t, time.Duration(*grace)*time.Second, timeout+10*time.Second,
				"%s: grace period %ds must outlast %s=%s by 10s", b.Name, *grace, b.DrainEnv, drain)
		}
	})
}

// configValue finds key in the ConfigMaps a Deployment reads.
func configValue(t *testing.T, m *manifest, d appsv1.Deployment, key string) string {
	t.Helper()
	for _, from := range d.Spec.Template.Spec.Containers[0].EnvFrom {
		if from.ConfigMapRef != nil {
			if v, ok := m.configMaps[from.ConfigMapRef.Name].Data[key]; ok {
				return v
			}
		}
	}
	t.Fatalf("%s: %s not in its ConfigMaps", d.Name, key)
	return ""
}

func TestDisruptionBudgets(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		for name, d := range m.deployments {
			var matched int
			for _, p := range m.pdbs {
				if !selects(t, p.Spec.Selector, d.Spec.Template.Labels) {
					continue
				}
				matched++
				// A budget that allows no disruption blocks node drains.
				allowsOne := (p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.IntValue() >= 1) ||
					(p.Spec.MinAvailable != nil && d.Spec.Replicas != nil && p.Spec.MinAvailable.IntValue() < int(*d.Spec.Replicas))
				assert.True(t, allowsOne, "%s: PodDisruptionBudget %s lets no pod be evicted", name, p.Name)
			}
			assert.Equal(t, 1, matched, "%s: exactly one PodDisruptionBudget", name)
		}
	})
}

func TestNetworkPoliciesAllowOnlyWhatEachNeeds(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		denyAll := slices.ContainsFunc(m.policies, func(p networkingv1.NetworkPolicy) bool {
			return len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
				len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 &&
				slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) &&
				slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		})
		assert.True(t, denyAll, "a default-deny policy for ingress and egress")
		for _, b := range binaries(m) {
			w, ok := m.workload(b.Name)
			if !ok {
				continue
			}
			egress, ingress := map[int]bool{}, map[int]bool{}
			for _, p := range m.policies {
				if !selects(t, &p.Spec.PodSelector, w.labels) {
					continue
				}
				for _, r := range p.Spec.Egress {
					for _, port := range r.Ports {
						egress[port.Port.IntValue()] = true
					}
					assert.NotEmpty(t, r.Ports, "%s: policy %s allows egress on every port", b.Name, p.Name)
				}
				for _, r := range p.Spec.Ingress {
					for _, port := range r.Ports {
						ingress[port.Port.IntValue()] = true
					}
					assert.NotEmpty(t, r.Ports, "%s: policy %s allows ingress on every port", b.Name, p.Name)
					assert.NotEmpty(t, r.From, "%s: policy %s allows ingress from anywhere", b.Name, p.Name)
				}
			}
			wantEgress := append([]int{contract.DNSPort}, b.Egress...)
			if m.overlay == "dev" && b.CallsVOMO {
				wantEgress = append(wantEgress, contract.SimPort) // the simulator stands in for the VOMO API
			}
			wantIngress := append([]int{contract.AdminPort}, b.Ingress...)
			assert.ElementsMatch(t, wantEgress, keys(egress), "%s: egress ports", b.Name)
			assert.ElementsMatch(t, wantIngress, keys(ingress), "%s: ingress ports", b.Name)
		}
	})
}

func keys(set map[int]bool) []int {
	var out []int
	for k := range set {
		out = append(out, k)
	}
	return out
}

func TestScalingPerService(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		// processor: KEDA on the lag of the consumer the processor reads.
		assert.Nil(t, m.deployments["processor"].Spec.Replicas, "processor: the ScaledObject owns replicas")
		require.Len(t, m.scaledObjects, 1)
		so := m.scaledObjects[0]
		assert.Equal(t, "processor", so.Spec.ScaleTargetRef.Name)
		require.Len(t, so.Spec.Triggers, 1)
		trig := so.Spec.Triggers[0]
		assert.Equal(t, "nats-jetstream", trig.Type)
		assert.Equal(t, messaging.StreamChanges, trig.Metadata["stream"])
		assert.Equal(t, messaging.ConsumerName, trig.Metadata["consumer"])
		assert.NotEmpty(t, trig.Metadata["natsServerMonitoringEndpoint"])
		assert.NotEmpty(t, trig.Metadata["lagThreshold"])
		assert.Less(t, *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount)

		// poller: HPA on the due-pairs gauge the poller exports.
		assert.Nil(t, m.deployments["poller"].Spec.Replicas, "poller: the HPA owns replicas")
		require.Len(t, m.hpas, 1)
		h := m.hpas[0]
		assert.Equal(t, "Deployment", h.Spec.ScaleTargetRef.Kind)
		assert.Equal(t, "poller", h.Spec.ScaleTargetRef.Name)
		require.Len(t, h.Spec.Metrics, 1)
		metric := h.Spec.Metrics[0]
		require.Equal(t, autoscalingv2.ExternalMetricSourceType, metric.Type)
		assert.Contains(t, metrics.Names(), metric.External.Metric.Name, "the HPA metric must be one the services export")
		assert.Equal(t, autoscalingv2.AverageValueMetricType, metric.External.Target.Type,
			"a fleet-wide count divided per replica, not a per-pod average")
		assert.Less(t, *h.Spec.MinReplicas, h.Spec.MaxReplicas)

		// reconciler: one replica, never two at once.
		r := m.deployments["reconciler"]
		require.NotNil(t, r.Spec.Replicas)
		assert.EqualValues(t, 1, *r.Spec.Replicas)
		assert.Equal(t, appsv1.RecreateDeploymentStrategyType, r.Spec.Strategy.Type)
	})
}

func TestConsoleIsReachable(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		svc, ok := m.services["console"]
		require.True(t, ok, "console Service")
		d := m.deployments["console"]
		assert.True(t, selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, d.Spec.Template.Labels),
			"the console Service selects the console pods")
		require.Len(t, svc.Spec.Ports, 1)
		target := svc.Spec.Ports[0].TargetPort.String()
		named := slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool {
			return p.Name == target && p.ContainerPort == contract.ConsolePort
		})
		assert.True(t, named, "Service targetPort %q must name the console's port %d", target, contract.ConsolePort)
		if m.overlay != "prod" {
			return
		}
		require.Len(t, m.ingresses, 1, "prod exposes the console through an Ingress")
		for _, rule := range m.ingresses[0].Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				assert.Equal(t, svc.Name, p.Backend.Service.Name)
				assert.Equal(t, svc.Spec.Ports[0].Name, p.Backend.Service.Port.Name)
			}
		}
	})
}

func TestMigrateJob(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, m *manifest) {
		j, ok := m.jobs["migrate"]
		require.True(t, ok)
		c := j.Spec.Template.Spec.Containers[0]
		assert.Equal(t, []string{"migrate"}, c.Args)
		assert.Contains(t, c.Image, "syncctl")
		assert.Equal(t, corev1.RestartPolicyNever, j.Spec.Template.Spec.RestartPolicy)
		assert.NotNil(t, j.Spec.BackoffLimit)
		assert.NotNil(t, j.Spec.ActiveDeadlineSeconds, "a migration stuck on a lock must not hang the rollout")
	})
}
