// Command schemagen writes the JSON schemas kubeconform validates our
// manifests against, offline: Kubernetes kinds from the OpenAPI (swagger v2)
// document shipped in the k8s.io/kubernetes module, and custom resources
// (KEDA) from their CRD files. Output follows the layout and naming of the
// public "standalone-strict" schema sets kubeconform knows:
//
//	<out>/v<k8s-version>-standalone-strict/<kind>-<group>-<version>.json
//
// Strict means every object that lists its properties rejects any other
// property, so a misspelt or misplaced field fails validation.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

const (
	refPrefix   = "#/definitions/"
	intOrString = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
	quantity    = "io.k8s.apimachinery.pkg.api.resource.Quantity"
	objectMeta  = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
)

type schema = map[string]any

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

func run() error {
	swaggerPath := flag.String("swagger", "", "Kubernetes api/openapi-spec/swagger.json")
	version := flag.String("k8s-version", "", "Kubernetes version the swagger document belongs to, e.g. 1.36.3")
	out := flag.String("out", "", "output root directory")
	flag.Parse()
	if *swaggerPath == "" || *version == "" || *out == "" {
		return errors.New("usage: schemagen -swagger FILE -k8s-version X.Y.Z -out DIR [CRD.yaml ...]")
	}
	defs, err := loadDefinitions(*swaggerPath)
	if err != nil {
		return err
	}
	dir := filepath.Join(*out, "v"+strings.TrimPrefix(*version, "v")+"-standalone-strict")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	n, err := writeBuiltins(dir, defs)
	if err != nil {
		return err
	}
	for _, crd := range flag.Args() {
		m, err := writeCRD(dir, crd, defs)
		if err != nil {
			return err
		}
		n += m
	}
	fmt.Printf("schemagen: %d schemas in %s\n", n, dir)
	return nil
}

func loadDefinitions(path string) (map[string]schema, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Definitions map[string]schema `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if len(doc.Definitions) == 0 {
		return nil, fmt.Errorf("%s has no definitions", path)
	}
	// Both accept a number or a string in YAML, whatever swagger v2 says.
	doc.Definitions[intOrString] = schema{"oneOf": []any{schema{"type": "string"}, schema{"type": "integer"}}}
	doc.Definitions[quantity] = schema{"oneOf": []any{schema{"type": "string"}, schema{"type": "number"}}}
	for name, d := range doc.Definitions {
		doc.Definitions[name] = tighten(d).(schema)
	}
	return doc.Definitions, nil
}

type gvk struct{ Group, Version, Kind string }

func (g gvk) apiVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

// fileName mirrors kubeconform's {{ .ResourceKind }}{{ .KindSuffix }}.json.
func (g gvk) fileName() string {
	suffix := "-" + strings.ToLower(g.Version)
	if g.Group != "" {
		suffix = "-" + strings.ToLower(strings.Split(g.Group, ".")[0]) + suffix
	}
	return strings.ToLower(g.Kind) + suffix + ".json"
}

func writeBuiltins(dir string, defs map[string]schema) (int, error) {
	n := 0
	for name, def := range defs {
		kinds, _ := def["x-kubernetes-group-version-kind"].([]any)
		if len(kinds) != 1 { // list/watch wrappers name several; never in a manifest
			continue
		}
		k := kinds[0].(schema)
		g := gvk{Group: k["group"].(string), Version: k["version"].(string), Kind: k["kind"].(string)}
		if _, ok := def["properties"].(schema)["kind"]; !ok {
			continue
		}
		if err := writeSchema(dir, g, clone(def), defs, name); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// writeSchema pins apiVersion and kind, then writes root plus the
// definitions it reaches, so each file stands alone.
func writeSchema(dir string, g gvk, root schema, defs map[string]schema, self string) error {
	props := root["properties"].(schema)
	props["apiVersion"] = schema{"type": "string", "enum": []any{g.apiVersion()}}
	props["kind"] = schema{"type": "string", "enum": []any{g.Kind}}
	root["required"] = union(root["required"], "apiVersion", "kind")
	reached := map[string]schema{}
	collectRefs(root, defs, reached)
	if self != "" {
		delete(reached, self)
	}
	if len(reached) > 0 {
		root["definitions"] = reached
	}
	delete(root, "x-kubernetes-group-version-kind")
	raw, err := json.Marshal(root)
	if err != nil {
		return fmt.Errorf("marshal %s: %w", g.fileName(), err)
	}
	return os.WriteFile(filepath.Join(dir, g.fileName()), raw, 0o644)
}

func collectRefs(node any, defs map[string]schema, reached map[string]schema) {
	switch n := node.(type) {
	case schema:
		if ref, ok := n["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, refPrefix)
			if _, seen := reached[name]; !seen {
				def, ok := defs[name]
				if !ok {
					panic("dangling $ref " + ref)
				}
				reached[name] = def
				collectRefs(def, defs, reached)
			}
		}
		for _, v := range n {
			collectRefs(v, defs, reached)
		}
	case []any:
		for _, v := range n {
			collectRefs(v, defs, reached)
		}
	}
}

// tighten makes a schema strict (no unlisted properties), lets optional
// fields be null as the API server does, and drops prose.
func tighten(node any) any {
	switch n := node.(type) {
	case schema:
		out := schema{}
		for k, v := range n {
			switch k {
			case "description", "x-kubernetes-patch-merge-key", "x-kubernetes-patch-strategy",
				"x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type",
				"x-kubernetes-unions", "x-kubernetes-validations", "example", "externalDocs":
				continue
			case "properties":
				props := schema{}
				required := stringSet(n["required"])
				for name, p := range v.(schema) {
					tp := tighten(p).(schema)
					if !required[name] {
						tp = nullable(tp)
					}
					props[name] = tp
				}
				out[k] = props
			default:
				out[k] = tighten(v)
			}
		}
		if n["x-kubernetes-int-or-string"] == true {
			delete(out, "type")
			out["anyOf"] = []any{schema{"type": "string"}, schema{"type": "integer"}}
		}
		if n["nullable"] == true {
			out = nullable(out)
			delete(out, "nullable")
		}
		_, hasProps := n["properties"]
		_, hasAdditional := n["additionalProperties"]
		if hasProps && !hasAdditional && n["x-kubernetes-preserve-unknown-fields"] != true {
			out["additionalProperties"] = false
		}
		return out
	case []any:
		out := make([]any, len(n))
		for i, v := range n {
			out[i] = tighten(v)
		}
		return out
	default:
		return n
	}
}

func nullable(s schema) schema {
	if t, ok := s["type"].(string); ok {
		s["type"] = []any{t, "null"}
	}
	return s
}

// writeCRD writes one schema per served version of a CustomResourceDefinition.
func writeCRD(dir, path string, defs map[string]schema) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var crd struct {
		Spec struct {
			Group string `json:"group"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Served bool   `json:"served"`
				Schema struct {
					OpenAPIV3Schema schema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	n := 0
	for _, v := range crd.Spec.Versions {
		if !v.Served || v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		root := tighten(v.Schema.OpenAPIV3Schema).(schema)
		props, ok := root["properties"].(schema)
		if !ok {
			return n, fmt.Errorf("%s %s: schema has no properties", path, v.Name)
		}
		// CRDs leave metadata open; hold it to the real ObjectMeta.
		props["metadata"] = schema{"$ref": refPrefix + objectMeta}
		g := gvk{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
		if err := writeSchema(dir, g, root, defs, ""); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: no served version with a schema", path)
	}
	return n, nil
}

func stringSet(v any) map[string]bool {
	set := map[string]bool{}
	list, _ := v.([]any)
	for _, s := range list {
		set[s.(string)] = true
	}
	return set
}

func union(v any, extra ...string) []any {
	set := stringSet(v)
	for _, e := range extra {
		set[e] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	list := make([]any, len(out))
	for i, s := range out {
		list[i] = s
	}
	return list
}

func clone(s schema) schema {
	raw, _ := json.Marshal(s)
	var c schema
	_ = json.Unmarshal(raw, &c)
	return c
}
