package registry

import (
	"errors"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	d1 = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	d2 = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"
)

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name      string
		ctype     string
		body      string
		wantErr   bool
		wantType  string
		wantAT    string
		wantBlobs int
		wantSubj  bool
	}{
		{name: "image", ctype: ocispec.MediaTypeImageManifest,
			body:     `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d1 + `","size":3},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + d2 + `","size":3}]}`,
			wantType: ocispec.MediaTypeImageManifest, wantAT: ocispec.MediaTypeImageConfig, wantBlobs: 2},
		{name: "artifact with subject, type from Content-Type", ctype: ocispec.MediaTypeImageManifest,
			body:     `{"schemaVersion":2,"artifactType":"application/x.sig","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + d1 + `","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d2 + `","size":10}}`,
			wantType: ocispec.MediaTypeImageManifest, wantAT: "application/x.sig", wantBlobs: 1, wantSubj: true},
		{name: "non-distributable layer not required", ctype: ocispec.MediaTypeImageManifest,
			body:     `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"` + d1 + `","size":3},"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"` + d2 + `","size":3,"urls":["https://example.com/x"]}]}`,
			wantType: ocispec.MediaTypeImageManifest, wantAT: "a/b", wantBlobs: 1},
		{name: "index", ctype: "",
			body:     `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d1 + `","size":3}]}`,
			wantType: ocispec.MediaTypeImageIndex},
		{name: "other media type is opaque", ctype: "application/vnd.example+json", body: `{"hello":"world"}`, wantType: "application/vnd.example+json"},
		{name: "empty", body: ``, wantErr: true},
		{name: "array", body: `[1,2]`, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "truncated", body: `{"schemaVersion":2`, wantErr: true},
		{name: "no media type", ctype: "application/json", body: `{"schemaVersion":2}`, wantErr: true},
		{name: "schema version 1", ctype: ocispec.MediaTypeImageManifest, body: `{"schemaVersion":1,"config":{"mediaType":"a/b","digest":"` + d1 + `","size":3}}`, wantErr: true},
		{name: "image without config", ctype: ocispec.MediaTypeImageManifest, body: `{"schemaVersion":2,"layers":[]}`, wantErr: true},
		{name: "bad layer digest", ctype: ocispec.MediaTypeImageManifest, body: `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"` + d1 + `","size":3},"layers":[{"mediaType":"a/b","digest":"sha256:zz","size":1}]}`, wantErr: true},
		{name: "negative size", ctype: ocispec.MediaTypeImageManifest, body: `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"` + d1 + `","size":-1}}`, wantErr: true},
		{name: "data field mismatch", ctype: ocispec.MediaTypeImageManifest, body: `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"` + d1 + `","size":3,"data":"YmF6"}}`, wantErr: true},
		{name: "mediaType differs from Content-Type", ctype: ocispec.MediaTypeImageIndex, body: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"` + d1 + `","size":3}}`, wantErr: true},
		{name: "index with layers", ctype: ocispec.MediaTypeImageIndex, body: `{"schemaVersion":2,"manifests":[],"layers":[]}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := parseManifest(tc.ctype, []byte(tc.body))
			if tc.wantErr {
				var ae *apiError
				if err == nil || !errors.As(err, &ae) || ae.code != CodeManifestInvalid {
					t.Fatalf("err = %v, want MANIFEST_INVALID", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.MediaType != tc.wantType || info.ArtifactType != tc.wantAT || len(info.Blobs) != tc.wantBlobs || (info.Subject != nil) != tc.wantSubj {
				t.Errorf("got %+v", info)
			}
		})
	}
}

func TestDuplicateKeys(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"distinct keys", `{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}`, ""},
		{"annotation keys differing in case", `{"annotations":{"a":"1","A":"2"}}`, ""},
		{"unknown keys differing in case", `{"x":1,"X":2}`, ""},
		{"top level", `{"a":1,"b":2,"a":3}`, `the key "a" twice at the top level`},
		{"in a layer", `{"layers":[{"size":1},{"size":2,"digest":"x","size":3}]}`, `the key "size" twice at layers[1]`},
		{"in annotations", `{"annotations":{"k":"1","k":"2"}}`, `the key "k" twice at annotations`},
		{"escaped", `{"size":1,"size":2}`, `the key "size" twice`},
		{"field in two cases", `{"config":{"mediaType":"a","MediaType":"b"}}`, `the field "mediaType" twice at config, as "mediaType" and "MediaType"`},
		{"nested arrays", `{"a":[[{"k":1,"k":2}]]}`, `twice at a[0][0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDuplicateKeys([]byte(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.code != CodeManifestInvalid || !strings.Contains(ae.message, tt.wantErr) {
				t.Fatalf("err = %v, want MANIFEST_INVALID containing %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"`+d1+`","size":3},"layers":[{"mediaType":"a/b","digest":"`+d2+`","size":3,"data":"Zm9v"}],"subject":{"mediaType":"a","digest":"`+d1+`","size":1}}`))
	f.Add(ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"a/b","digest":"`+d1+`","size":3}]}`))
	f.Add("application/json", []byte(`{"mediaType":"x/y"}`))
	f.Add("", []byte(`null`))
	f.Add("text/plain; charset=utf-8", []byte(`{"schemaVersion":2,"config":null}`))
	// Duplicate keys, a field in two cases, and sizes that lie about the data they carry.
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"schemaVersion":2,"config":{"mediaType":"a/b","digest":"`+d1+`","size":3}}`))
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"`+d1+`","size":99999,"size":3}}`))
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"`+d1+`","size":3},"Layers":[],"layers":[]}`))
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"`+d1+`","size":3},"layers":[{"mediaType":"a/b","digest":"`+d2+`","size":99999,"data":"Zm9v"}]}`))
	f.Add(ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"a/b","digest":"`+d1+`","size":3,"s\u0069ze":4}]}`))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		info, err := parseManifest(ctype, body)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != 400 {
				t.Fatalf("error is not a 400 apiError: %v", err)
			}
			return
		}
		if info.MediaType == "" {
			t.Fatal("accepted manifest without media type")
		}
		for _, d := range append(append([]fieldDescriptor{}, info.Blobs...), info.Manifests...) {
			if _, err := parseDigest(d.Digest.String()); err != nil || d.Size < 0 {
				t.Fatalf("accepted bad descriptor %+v", d)
			}
		}
	})
}
