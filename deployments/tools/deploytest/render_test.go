package deploytest

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// overlays are the kustomize overlays CI validates.
var overlays = []string{"dev", "prod"}

// scaledObject is the part of a KEDA ScaledObject the tests read.
type scaledObject struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// manifest is one overlay rendered as `kustomize build` renders it.
type manifest struct {
	overlay         string
	kinds           map[string]int
	namespaces      map[string]bool
	deployments     map[string]appsv1.Deployment
	jobs            map[string]batchv1.Job
	configMaps      map[string]corev1.ConfigMap
	serviceAccounts map[string]corev1.ServiceAccount
	services        map[string]corev1.Service
	pdbs            []policyv1.PodDisruptionBudget
	policies        []networkingv1.NetworkPolicy
	hpas            []autoscalingv2.HorizontalPodAutoscaler
	scaledObjects   []scaledObject
	ingresses       []networkingv1.Ingress
}

func render(t *testing.T, overlay string) *manifest {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deployments/k8s/overlays", overlay)
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	require.NoError(t, err, "kustomize build %s", overlay)
	m := &manifest{
		overlay: overlay, kinds: map[string]int{}, namespaces: map[string]bool{},
		deployments: map[string]appsv1.Deployment{}, jobs: map[string]batchv1.Job{},
		configMaps: map[string]corev1.ConfigMap{}, serviceAccounts: map[string]corev1.ServiceAccount{},
		services: map[string]corev1.Service{},
	}
	for _, r := range resources.Resources() {
		raw, err := r.MarshalJSON()
		require.NoError(t, err)
		kind := r.GetKind()
		m.kinds[kind]++
		if kind != "Namespace" {
			m.namespaces[r.GetNamespace()] = true
		}
		decode := func(v any) { require.NoError(t, json.Unmarshal(raw, v), "%s %s", kind, r.GetName()) }
		switch kind {
		case "Deployment":
			var d appsv1.Deployment
			decode(&d)
			m.deployments[d.Name] = d
		case "Job":
			var j batchv1.Job
			decode(&j)
			m.jobs[j.Name] = j
		case "ConfigMap":
			var c corev1.ConfigMap
			decode(&c)
			m.configMaps[c.Name] = c
		case "ServiceAccount":
			var s corev1.ServiceAccount
			decode(&s)
			m.serviceAccounts[s.Name] = s
		case "Service":
			var s corev1.Service
			decode(&s)
			m.services[s.Name] = s
		case "PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			decode(&p)
			m.pdbs = append(m.pdbs, p)
		case "NetworkPolicy":
			var p networkingv1.NetworkPolicy
			decode(&p)
			m.policies = append(m.policies, p)
		case "HorizontalPodAutoscaler":
			var h autoscalingv2.HorizontalPodAutoscaler
			decode(&h)
			m.hpas = append(m.hpas, h)
		case "ScaledObject":
			var s scaledObject
			decode(&s)
			m.scaledObjects = append(m.scaledObjects, s)
		case "Ingress":
			var i networkingv1.Ingress
			decode(&i)
			m.ingresses = append(m.ingresses, i)
		}
	}
	return m
}

// workload is a Deployment's or Job's pod, named after the binary it runs.
type workload struct {
	name   string
	labels map[string]string
	pod    corev1.PodSpec
}

func (m *manifest) workload(name string) (workload, bool) {
	if d, ok := m.deployments[name]; ok {
		return workload{name, d.Spec.Template.Labels, d.Spec.Template.Spec}, true
	}
	if j, ok := m.jobs[name]; ok {
		return workload{name, j.Spec.Template.Labels, j.Spec.Template.Spec}, true
	}
	return workload{}, false
}

func (m *manifest) workloads() []workload {
	var out []workload
	for name := range m.deployments {
		w, _ := m.workload(name)
		out = append(out, w)
	}
	for name := range m.jobs {
		w, _ := m.workload(name)
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b workload) int {
		if a.name < b.name {
			return -1
		}
		return 1
	})
	return out
}

// selects reports whether a label selector picks the given pod labels.
func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	require.NoError(t, err)
	return s.Matches(labels.Set(podLabels))
}

// forEachOverlay runs fn on every overlay in parallel.
func forEachOverlay(t *testing.T, fn func(t *testing.T, m *manifest)) {
	t.Parallel()
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			t.Parallel()
			fn(t, render(t, o))
		})
	}
}
