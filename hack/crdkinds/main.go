// Command crdkinds writes what api/v1alpha1's table of kinds says of each
// kind (its names, short names, category and printer columns) into the
// CustomResourceDefinitions that controller-gen generated, so that kubectl
// and `outpost get` read one registration. `make generate` runs it:
//
//	go run ./hack/crdkinds deploy/crds
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

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
