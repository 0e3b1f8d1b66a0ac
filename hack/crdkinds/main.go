// Command crdkinds writes what api/v1alpha1's table of kinds says of each
// kind (its names, short names, category, printer columns and the syntax of
// fields that Go code defines, as validation rules) into the CustomResourceDefinitions
// that controller-gen generated, so that kubectl and `outpost get` read one
// registration. It also gives every label selector of the schemas the rules
// of Go's selector validation (operators, label keys and values), which
// markers cannot put on metav1.LabelSelector. `make generate` runs it:
//
//	go run ./hack/crdkinds deploy/crds
package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api/v1alpha1"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdkinds DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "crdkinds:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	for _, k := range v1alpha1.Kinds() {
		path := filepath.Join(dir, v1alpha1.GroupName+"_"+k.Plural+".yaml")
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("kind %s: %w", k.Kind, err)
		}
		var crd map[string]any
		if err := yaml.Unmarshal(bytes.TrimPrefix(b, []byte("---\n")), &crd); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		spec, ok := crd["spec"].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: no spec", path)
		}
		spec["names"] = k.CRDNames()
		versions, _ := spec["versions"].([]any)
		for _, v := range versions {
			if v, ok := v.(map[string]any); ok && v["name"] == v1alpha1.Version {
				if cols := k.PrinterColumns(); len(cols) > 0 {
					v["additionalPrinterColumns"] = cols
				} else {
					delete(v, "additionalPrinterColumns")
				}
				schema, err := openAPISchema(v)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				for _, field := range slices.Sorted(maps.Keys(k.Syntax)) {
					prop, err := property(schema, field)
					if err != nil {
						return fmt.Errorf("%s: %w", path, err)
					}
					syn := k.Syntax[field]
					if strings.Contains(syn.Pattern, "'") {
						return fmt.Errorf("%s: the pattern of %s has a quote", path, field)
					}
					rules, _ := prop["x-kubernetes-validations"].([]any)
					prop["x-kubernetes-validations"] = append(rules, map[string]any{
						"rule": "self.matches(r'" + syn.Pattern + "')", "message": syn.Message})
				}
				selectorRules(schema)
			}
		}
		out, err := yaml.Marshal(crd)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := os.WriteFile(path, append([]byte("---\n"), out...), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// openAPISchema returns the openAPIV3Schema of a CRD version.
func openAPISchema(version map[string]any) (map[string]any, error) {
	schema, _ := version["schema"].(map[string]any)
	s, ok := schema["openAPIV3Schema"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("version %v has no openAPIV3Schema", version["name"])
	}
	return s, nil
}

// property returns the schema of the field at path (such as
// spec.model.version) in schema.
func property(schema map[string]any, path string) (map[string]any, error) {
	s := schema
	for _, f := range strings.Split(path, ".") {
		props, _ := s["properties"].(map[string]any)
		next, ok := props[f].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("no field %s in the schema", path)
		}
		s = next
	}
	return s, nil
}

// Rules and bounds of a label selector, as validateSelector in api/v1alpha1
// checks it. The bounds keep the rules' estimated cost within the
// apiserver's budget.
const (
	ruleLabelKeys = "self.all(k, !format.qualifiedName().validate(k).hasValue())"
	ruleKey       = "!format.qualifiedName().validate(self).hasValue()"
	ruleValues    = "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0"
	// patLabelValue is a label value of at most 63 characters.
	patLabelValue = `^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`

	msgLabelKey   = "must be a label key: an optional DNS subdomain prefix and '/', and a name of at most 63 letters, digits, '-', '_' or '.' that starts and ends with a letter or digit"
	msgLabelValue = "must be a label value: at most 63 letters, digits, '-', '_' or '.' that start and end with a letter or digit"
)

// selectorRules finds the label selectors in schema (objects of matchLabels
// and matchExpressions) and gives them the rules of Go's validation.
func selectorRules(schema map[string]any) {
	props, _ := schema["properties"].(map[string]any)
	labels, ok1 := props["matchLabels"].(map[string]any)
	exprs, ok2 := props["matchExpressions"].(map[string]any)
	if ok1 && ok2 && len(props) == 2 {
		labels["maxProperties"] = int64(v1alpha1.MaxSelectorTerms)
		labels["x-kubernetes-validations"] = []any{map[string]any{"rule": ruleLabelKeys, "message": "keys " + msgLabelKey}}
		if v, ok := labels["additionalProperties"].(map[string]any); ok {
			v["maxLength"], v["pattern"] = int64(63), patLabelValue
		}
		exprs["maxItems"] = int64(v1alpha1.MaxSelectorTerms)
		if item, ok := exprs["items"].(map[string]any); ok {
			item["x-kubernetes-validations"] = []any{map[string]any{"rule": ruleValues,
				"message": "In and NotIn take one or more values, Exists and DoesNotExist none", "fieldPath": ".values"}}
			ip, _ := item["properties"].(map[string]any)
			if op, ok := ip["operator"].(map[string]any); ok {
				op["enum"] = []any{"In", "NotIn", "Exists", "DoesNotExist"}
			}
			if key, ok := ip["key"].(map[string]any); ok {
				key["maxLength"] = int64(317)
				key["x-kubernetes-validations"] = []any{map[string]any{"rule": ruleKey, "message": msgLabelKey}}
			}
			if vals, ok := ip["values"].(map[string]any); ok {
				vals["maxItems"] = int64(v1alpha1.MaxSelectorValues)
				if v, ok := vals["items"].(map[string]any); ok {
					v["maxLength"], v["pattern"] = int64(63), patLabelValue
				}
			}
		}
		return
	}
	for _, p := range props {
		if p, ok := p.(map[string]any); ok {
			selectorRules(p)
		}
	}
	if items, ok := schema["items"].(map[string]any); ok {
		selectorRules(items)
	}
	if ap, ok := schema["additionalProperties"].(map[string]any); ok {
		selectorRules(ap)
	}
}
