package v1alpha1

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxDecodeBytes is the largest input Decode accepts.
const MaxDecodeBytes = 4 << 20

// maxDecodeObjects bounds the number of objects in one input.
const maxDecodeObjects = 10000

// ErrTooLarge is returned by Decode for input over MaxDecodeBytes.
var ErrTooLarge = errors.New("input too large")

// Decode parses one or more resources from YAML or JSON. YAML input may hold several documents
// separated by "---" lines; JSON input may hold several concatenated objects. A document of kind
// List, or the list kind of a kind (ClusterList, ...), contributes its items. Decoding is strict: an unknown
// or duplicated field, an unknown apiVersion or kind, or a value of the wrong type is an error
// that names it. Empty documents are skipped. Decode does not validate field values; call
// Validate on each object for that.
func Decode(data []byte) ([]Object, error) {
	if len(data) > MaxDecodeBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxDecodeBytes)
	}
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	var out []Object
	for i, doc := range docs {
		objs, err := decodeDocument(doc, "")
		if err != nil {
			if len(docs) > 1 {
				return nil, fmt.Errorf("document %d: %w", i+1, err)
			}
			return nil, err
		}
		out = append(out, objs...)
		if len(out) > maxDecodeObjects {
			return nil, fmt.Errorf("more than %d objects", maxDecodeObjects)
		}
	}
	return out, nil
}

// splitDocuments returns the non-empty documents of data, each as JSON.
func splitDocuments(data []byte) ([][]byte, error) {
	trimmed := bytes.TrimSpace(data)
	var docs [][]byte
	if len(trimmed) > 0 && trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		for {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			if err != nil {
				return nil, fmt.Errorf("malformed JSON: %w", err)
			}
			if len(docs) >= maxDecodeObjects {
				return nil, fmt.Errorf("more than %d documents", maxDecodeObjects)
			}
			docs = append(docs, raw)
		}
	}
	r := yamlutil.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading YAML document %d: %w", n, err)
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("malformed YAML in document %d: %w", n, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue
		}
		if len(docs) >= maxDecodeObjects {
			return nil, fmt.Errorf("more than %d documents", maxDecodeObjects)
		}
		docs = append(docs, js)
	}
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type rawList struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   json.RawMessage   `json:"metadata,omitempty"`
	Items      []json.RawMessage `json:"items"`
}

// decodeDocument decodes one JSON document; defaultKind is the kind assumed for list items
// that carry no apiVersion and kind.
func decodeDocument(doc []byte, defaultKind string) ([]Object, error) {
	var tm typeMeta
	if err := sjson.UnmarshalCaseSensitivePreserveInts(doc, &tm); err != nil {
		return nil, fmt.Errorf("expected an object with apiVersion and kind: %w", err)
	}
	if tm.APIVersion == "" && tm.Kind == "" && defaultKind != "" {
		tm = typeMeta{APIVersion: APIVersion, Kind: defaultKind}
	}
	switch {
	case tm.Kind == "":
		return nil, errors.New("kind is required")
	case tm.Kind == "List" && (tm.APIVersion == "v1" || tm.APIVersion == APIVersion):
		return decodeList(doc, "")
	case tm.APIVersion == "":
		return nil, fmt.Errorf("apiVersion is required (use %s)", APIVersion)
	case tm.APIVersion != APIVersion:
		return nil, fmt.Errorf("unknown apiVersion %q for kind %q (use %s)", tm.APIVersion, tm.Kind, APIVersion)
	}
	if k, ok := LookupKind(tm.Kind); ok && k.ListKind == tm.Kind {
		return decodeList(doc, k.Kind)
	}
	obj, err := New(tm.Kind)
	if err != nil {
		return nil, err
	}
	if err := unmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	SetTypeMeta(obj)
	return []Object{obj}, nil
}

func decodeList(doc []byte, itemKind string) ([]Object, error) {
	var l rawList
	if err := unmarshalStrict(doc, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", l.Kind, err)
	}
	var out []Object
	for i, item := range l.Items {
		objs, err := decodeDocument(item, itemKind)
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// unmarshalStrict decodes JSON case-sensitively, rejecting unknown and duplicated fields.
func unmarshalStrict(doc []byte, v any) error {
	strict, err := sjson.UnmarshalStrict(doc, v, sjson.DisallowDuplicateFields, sjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return errors.New(strings.Join(msgs, ", "))
	}
	return nil
}
