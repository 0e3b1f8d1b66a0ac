package v1alpha1

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

func TestKindNamesUnique(t *testing.T) {
	seen := map[string]string{}
	for _, k := range Kinds() {
		for _, n := range append([]string{strings.ToLower(k.Kind), k.Plural, k.Singular}, k.ShortNames...) {
			if prev, ok := seen[n]; ok && prev != k.Kind {
				t.Errorf("%q names both %s and %s", n, prev, k.Kind)
			}
			seen[n] = k.Kind
			if got, err := LookupName(strings.ToUpper(n)); err != nil || got != k {
				t.Errorf("LookupName(%q) = %v, %v; want %s", strings.ToUpper(n), got, err, k.Kind)
			}
		}
	}
	if _, err := LookupName("pod"); err == nil || !strings.Contains(err.Error(), "cluster (cl), modeldeployment (md)") &&
		!strings.Contains(err.Error(), "known: cluster, modeldeployment") {
		t.Errorf("LookupName(pod): %v, want an error listing the kinds", err)
	}
}

// Every kind's functions work on its own types: New, KindOf, SetTypeMeta,
// NewList and Items, ResetStatus and CopyStatus (a deep copy).
func TestKindFunctions(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(k.Kind, func(t *testing.T) {
			o := k.New()
			if o.GetObjectKind().GroupVersionKind() != SchemeGroupVersion.WithKind(k.Kind) || KindOf(o) != k.Kind {
				t.Errorf("New: %v, KindOf %q", o.GetObjectKind().GroupVersionKind(), KindOf(o))
			}
			if p, ok := PluralForKind(k.Kind); !ok || p != k.Plural {
				t.Errorf("PluralForKind = %q", p)
			}
			if kind, ok := KindForPlural(k.Plural); !ok || kind != k.Kind {
				t.Errorf("KindForPlural = %q", kind)
			}
			o.SetName("a")
			b := k.New()
			b.SetName("b")
			l, err := k.NewList([]Object{o, b})
			if err != nil {
				t.Fatal(err)
			}
			if KindOf(l) != k.ListKind || l.GetObjectKind().GroupVersionKind().Kind != k.ListKind {
				t.Errorf("list kind %q / %q", KindOf(l), l.GetObjectKind().GroupVersionKind().Kind)
			}
			items, err := k.Items(l)
			if err != nil || len(items) != 2 || items[0].GetName() != "a" || items[1].GetName() != "b" {
				t.Errorf("Items: %v %v", items, err)
			}
			for _, other := range Kinds() {
				if other != k {
					if _, err := k.NewList([]Object{other.New()}); err == nil {
						t.Errorf("NewList took a %s", other.Kind)
					}
					ol, err := other.NewList(nil)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := k.Items(ol); err == nil {
						t.Errorf("Items took a %s", other.ListKind)
					}
				}
			}

			// Status: set a condition through the Status field, copy, change the source.
			src := withCondition(t, k.New(), "x")
			dst := k.New()
			k.CopyStatus(dst, src)
			if conditionOf(t, dst) != "x" {
				t.Fatalf("CopyStatus did not copy the status")
			}
			setCondition(t, src, "y")
			if conditionOf(t, dst) != "x" {
				t.Errorf("CopyStatus shares memory with the source")
			}
			k.ResetStatus(dst)
			if conditionOf(t, dst) != "" {
				t.Errorf("ResetStatus left the status")
			}
		})
	}
}

// statusConditions returns a pointer to the Conditions of o's status, found by reflection so
// that the test holds for every kind with conditions.
func statusConditions(t *testing.T, o Object) *[]metav1.Condition {
	t.Helper()
	f := reflect.ValueOf(o).Elem().FieldByName("Status").FieldByName("Conditions")
	if !f.IsValid() {
		t.Skipf("%T has no status conditions", o)
	}
	return f.Addr().Interface().(*[]metav1.Condition)
}

func withCondition(t *testing.T, o Object, msg string) Object {
	setCondition(t, o, msg)
	return o
}

func setCondition(t *testing.T, o Object, msg string) {
	c := statusConditions(t, o)
	if len(*c) == 0 {
		*c = []metav1.Condition{{Type: "T"}}
	}
	(*c)[0].Message = msg
}

func conditionOf(t *testing.T, o Object) string {
	c := statusConditions(t, o)
	if len(*c) == 0 {
		return ""
	}
	return (*c)[0].Message
}

// The CRDs in deploy/crds carry the names and printer columns of the table
// (make generate writes them), and every printer column's path is a field
// of the CRD's schema.
func TestCRDsMatchKinds(t *testing.T) {
	for _, k := range Kinds() {
		path := filepath.Join("..", "..", "deploy", "crds", GroupName+"_"+k.Plural+".yaml")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run make generate)", k.Kind, err)
		}
		var crd struct {
			Spec struct {
				Names    map[string]any `json:"names"`
				Versions []struct {
					Name    string `json:"name"`
					Columns []any  `json:"additionalPrinterColumns"`
					Schema  struct {
						OpenAPIV3Schema openAPISchema `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(bytes.TrimPrefix(b, []byte("---\n")), &crd); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !jsonEqual(t, crd.Spec.Names, k.CRDNames()) {
			t.Errorf("%s: names %v, the table says %v (run make generate)", path, crd.Spec.Names, k.CRDNames())
		}
		if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != Version {
			t.Fatalf("%s: versions %v", path, crd.Spec.Versions)
		}
		v := crd.Spec.Versions[0]
		if !jsonEqual(t, v.Columns, k.PrinterColumns()) {
			t.Errorf("%s: printer columns %v, the table says %v (run make generate)", path, v.Columns, k.PrinterColumns())
		}
		for _, c := range k.Columns {
			if c.JSONPath != "" && c.JSONPath != ".metadata.creationTimestamp" && !v.Schema.OpenAPIV3Schema.has(c.JSONPath) {
				t.Errorf("%s column %q: %s is not a field of the schema", k.Kind, c.Name, c.JSONPath)
			}
		}
		for path, syn := range k.Syntax {
			prop, ok := v.Schema.OpenAPIV3Schema.at(path)
			rule := "self.matches(r'" + syn.Pattern + "')"
			if !ok || !slices.ContainsFunc(prop.Validations, func(r celRule) bool { return r.Rule == rule && r.Message == syn.Message }) {
				t.Errorf("%s: %s lacks the rule of its syntax (run make generate)", path, k.Kind)
			}
		}
	}
}

// openAPISchema is the part of an OpenAPI schema that names fields and
// their rules.
type openAPISchema struct {
	Properties  map[string]openAPISchema `json:"properties"`
	Validations []celRule                `json:"x-kubernetes-validations"`
}

// celRule is a validation rule of a schema.
type celRule struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

func (s openAPISchema) has(path string) bool {
	_, ok := s.at(path)
	return ok
}

// at returns the schema of the field at path (.spec.model or spec.model).
func (s openAPISchema) at(path string) (openAPISchema, bool) {
	for _, f := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		next, ok := s.Properties[f]
		if !ok {
			return openAPISchema{}, false
		}
		s = next
	}
	return s, true
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	ab, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ab, bb)
}
