package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
)

// structFields are the keys the registry decodes into struct fields of a manifest or descriptor.
// encoding/json matches them ignoring case, so two keys that fold to one of them would be one
// field to the registry and two to a case-sensitive client.
var structFields = []string{
	"schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject",
	"annotations", "digest", "size", "urls", "data", "platform",
}

// checkDuplicateKeys refuses JSON in which an object names a key twice, or names a manifest field
// twice in different case. Parsers disagree on which of the two counts (encoding/json takes the
// last, others the first), so such a manifest could mean one thing to the registry and another
// to a client. body must be valid JSON.
func checkDuplicateKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	// One frame per open object or array; keys is nil for an array.
	type frame struct {
		keys    map[string]bool
		folded  map[string]string
		key     string // the object's current key
		index   int    // the array's current index
		wantKey bool
	}
	var stack []*frame
	path := func() string {
		var b strings.Builder
		for i, f := range stack {
			switch {
			case f.keys == nil:
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
			case i < len(stack)-1:
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			}
		}
		if b.Len() == 0 {
			return "the top level"
		}
		return b.String()
	}
	// valueDone moves the innermost frame past a value.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if f := stack[len(stack)-1]; f.keys != nil {
			f.wantKey = true
		} else {
			f.index++
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalidManifest("manifest JSON: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &frame{keys: map[string]bool{}, folded: map[string]string{}, wantKey: true})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			if top == nil || !top.wantKey {
				valueDone()
				continue
			}
			if top.keys[t] {
				return invalidManifest("manifest names the key %q twice at %s", t, path())
			}
			top.keys[t] = true
			for _, f := range structFields {
				if strings.EqualFold(t, f) {
					if other, ok := top.folded[f]; ok {
						return invalidManifest("manifest names the field %q twice at %s, as %q and %q", f, path(), other, t)
					}
					top.folded[f] = t
				}
			}
			top.key, top.wantKey = t, false
		default:
			valueDone()
		}
	}
}
