package v1alpha1

// Category is the category of every kind: `kubectl get outpost` lists them all.
const Category = "outpost"

// CRDNames returns the spec.names of the kind's CustomResourceDefinition,
// as `make generate` writes it into deploy/crds.
func (k *KindInfo) CRDNames() map[string]any {
	names := map[string]any{
		"kind": k.Kind, "listKind": k.ListKind, "plural": k.Plural, "singular": k.Singular,
		"categories": []any{Category},
	}
	if len(k.ShortNames) > 0 {
		short := make([]any, len(k.ShortNames))
		for i, s := range k.ShortNames {
			short[i] = s
		}
		names["shortNames"] = short
	}
	return names
}

// PrinterColumns returns the additionalPrinterColumns of the kind's
// CustomResourceDefinition: its Columns that have a JSONPath.
func (k *KindInfo) PrinterColumns() []any {
	var cols []any
	for _, c := range k.Columns {
		if c.JSONPath == "" {
			continue
		}
		col := map[string]any{"name": c.Name, "type": c.Type, "jsonPath": c.JSONPath}
		if c.Priority != 0 {
			col["priority"] = int64(c.Priority)
		}
		cols = append(cols, col)
	}
	return cols
}
