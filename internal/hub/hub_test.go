package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/auth"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/store"
	"outpost.dev/outpost/internal/versions"
)

// fakeModels is a fake ModelResolver standing in for the registry: a fixed set of model
// versions, some of them signed, resolved with the versions package.
type fakeModels struct {
	mu       sync.Mutex
	models   map[string]map[string]bool         // model -> version -> signed
	variants map[string][]v1alpha1.ModelVariant // model@version -> its variants
	sizes    map[string]int64                   // model@version -> its size, where not the default
}

func newFakeModels() *fakeModels {
	return &fakeModels{models: map[string]map[string]bool{
		"resnet": {"1.0.0": true, "1.2.0": true, "1.3.0-rc.1": false, "2.0.0": false},
		"bert":   {"0.9.0": false},
	}}
}

func (f *fakeModels) set(model, version string, signed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.models[model] == nil {
		f.models[model] = map[string]bool{}
	}
	f.models[model][version] = signed
}

func (f *fakeModels) clear(model string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.models, model)
}

func (f *fakeModels) ResolveModel(_ context.Context, name, constraint string, requireSigned bool) (ResolvedModel, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var avail []string
	for v, signed := range f.models[name] {
		if signed || !requireSigned {
			avail = append(avail, v)
		}
	}
	v, err := versions.Resolve(constraint, avail)
	if err != nil {
		return ResolvedModel{}, err
	}
	size, ok := f.sizes[name+"@"+v]
	if !ok {
		size = int64(len(v)) * 100
	}
	return ResolvedModel{Version: v, Digest: "sha256:" + name + "-" + v, Size: size, Variants: f.variants[name+"@"+v]}, nil
}

func (f *fakeModels) setVariants(model, version string, size int64, vs ...v1alpha1.ModelVariant) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.variants == nil {
		f.variants, f.sizes = map[string][]v1alpha1.ModelVariant{}, map[string]int64{}
	}
	f.variants[model+"@"+version], f.sizes[model+"@"+version] = vs, size
}

// fakeAuthorize accepts "Bearer writer" for everything and "Bearer reader" for reads.
func fakeAuthorize(r *http.Request, write bool) error {
	switch r.Header.Get("Authorization") {
	case "Bearer writer":
		return nil
	case "Bearer reader":
		if write {
			return fmt.Errorf("token may only read: %w", auth.ErrForbidden)
		}
		return nil
	case "":
		return fmt.Errorf("no token: %w", auth.ErrUnauthenticated)
	}
	return fmt.Errorf("unknown token: %w", auth.ErrUnauthenticated)
}

type env struct {
	t      testing.TB
	srv    *Server
	db     *store.DB
	models *fakeModels
	url    string
	path   string
	cfg    Config
}

func newEnv(t testing.TB, mutate func(*Config), opts ...store.Option) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.db")
	db, err := store.Open(t.Context(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	models := newFakeModels()
	registry := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		_, _ = io.WriteString(w, "{}")
	})
	cfg := Config{DB: db, Models: models, Authorize: fakeAuthorize, Registry: registry}
	if mutate != nil {
		mutate(&cfg)
	}
	e := &env{t: t, db: db, models: models, path: path, cfg: cfg}
	e.restart()
	return e
}

// restart starts a new Server over the same database and configuration, as a hub
// restarted: whatever it kept in memory only is gone.
func (e *env) restart() {
	e.t.Helper()
	srv, err := New(e.t.Context(), e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	e.t.Cleanup(srv.Wait) // after ts closes; before the database does
	e.t.Cleanup(ts.Close)
	e.srv, e.url = srv, ts.URL+v1alpha1.APIPath
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request; header holds extra header names and values, in pairs.
func (e *env) do(method, path, token, contentType string, body []byte, header ...string) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (e *env) put(plural, name, yamlBody string) response {
	e.t.Helper()
	return e.do(http.MethodPut, "/"+plural+"/"+name, "writer", "application/yaml", []byte(yamlBody))
}

func (e *env) mustPut(plural, name, yamlBody string) {
	e.t.Helper()
	if r := e.put(plural, name, yamlBody); r.code != http.StatusOK && r.code != http.StatusCreated {
		e.t.Fatalf("PUT %s/%s = %d %s", plural, name, r.code, r.body)
	}
}

func (e *env) revision() int64 {
	e.t.Helper()
	rev, err := e.db.Revision(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return rev
}

func clusterYAML(name, labels string) string {
	return fmt.Sprintf("apiVersion: ml.outpost.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: %s\n  labels: {%s}\n", name, labels)
}

func mdYAML(name, model, version, selectors string) string {
	return fmt.Sprintf("apiVersion: ml.outpost.dev/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: %s\nspec:\n  model: {name: %s, version: %q}\n  clusterSelectors: %s\n",
		name, model, version, selectors)
}

func decodeJSON[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func TestApplyGetListDelete(t *testing.T) {
	e := newEnv(t, nil)
	if r := e.put("clusters", "edge-1", clusterYAML("edge-1", "region: eu")); r.code != http.StatusCreated {
		t.Fatalf("create = %d %s", r.code, r.body)
	}
	if r := e.put("clusters", "edge-1", clusterYAML("edge-1", "region: eu, gpu: 'true'")); r.code != http.StatusOK {
		t.Fatalf("update = %d %s", r.code, r.body)
	}
	// POST applies too, and accepts JSON.
	js := `{"apiVersion":"ml.outpost.dev/v1alpha1","kind":"Cluster","metadata":{"name":"edge-2","labels":{"region":"us"}}}`
	if r := e.do(http.MethodPost, "/clusters", "writer", "application/json", []byte(js)); r.code != http.StatusCreated {
		t.Fatalf("POST = %d %s", r.code, r.body)
	}

	r := e.do(http.MethodGet, "/clusters/edge-1", "reader", "", nil)
	c := decodeJSON[v1alpha1.Cluster](t, r.body)
	if r.code != http.StatusOK || c.Kind != "Cluster" || c.APIVersion != v1alpha1.APIVersion || c.Labels["gpu"] != "true" || c.UID == "" {
		t.Fatalf("GET = %d %s", r.code, r.body)
	}

	tests := []struct {
		selector string
		want     string
	}{
		{"", "edge-1,edge-2"},
		{"region%3Deu", "edge-1"},
		{"region+in+(eu,us),!gpu", "edge-2"},
	}
	for _, tt := range tests {
		r := e.do(http.MethodGet, "/clusters?labelSelector="+tt.selector, "reader", "", nil)
		l := decodeJSON[v1alpha1.ClusterList](t, r.body)
		var names []string
		for _, c := range l.Items {
			names = append(names, c.Name)
		}
		if r.code != http.StatusOK || l.Kind != "ClusterList" || strings.Join(names, ",") != tt.want ||
			l.ResourceVersion != strconv.FormatInt(e.revision(), 10) {
			t.Errorf("list %q = %d %s", tt.selector, r.code, r.body)
		}
	}
	if r := e.do(http.MethodGet, "/clusters?labelSelector=a%3D%3D%3Db", "reader", "", nil); r.code != http.StatusBadRequest {
		t.Errorf("bad selector = %d", r.code)
	}

	// YAML out on request.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url+"/clusters/edge-1", nil)
	req.Header.Set("Authorization", "Bearer reader")
	req.Header.Set("Accept", "application/yaml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	yb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/yaml" || !bytes.Contains(yb, []byte("kind: Cluster")) {
		t.Errorf("YAML GET = %s %s", resp.Header.Get("Content-Type"), yb)
	}

	if r := e.do(http.MethodDelete, "/clusters/edge-1", "writer", "", nil); r.code != http.StatusOK {
		t.Fatalf("DELETE = %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodGet, "/clusters/edge-1", "reader", "", nil); r.code != http.StatusNotFound {
		t.Fatalf("GET after delete = %d", r.code)
	}
	if r := e.do(http.MethodDelete, "/clusters/edge-1", "writer", "", nil); r.code != http.StatusNotFound {
		t.Fatalf("second DELETE = %d", r.code)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 4096 })
	e.mustPut("clusters", "edge-1", clusterYAML("edge-1", "region: eu"))
	good := mdYAML("resnet", "resnet", "^1", "[{matchLabels: {region: eu}}]")
	tests := []struct {
		name     string
		method   string
		path     string
		ct       string
		body     string
		wantCode int
		wantMsg  string
	}{
		{"unknown field", "PUT", "/modeldeployments/resnet", "application/yaml", good + "  colour: red\n", 400, `unknown field "spec.colour"`},
		{"malformed yaml", "PUT", "/modeldeployments/resnet", "application/yaml", "spec: [unclosed\n", 400, "malformed YAML"},
		{"malformed json", "POST", "/modeldeployments", "application/json", `{"kind":`, 400, "malformed JSON"},
		{"unknown kind in body", "POST", "/clusters", "application/yaml", "apiVersion: ml.outpost.dev/v1alpha1\nkind: Widget\nmetadata: {name: p}\n", 400, `unknown kind "Widget"`},
		{"kind does not match path", "PUT", "/clusters/resnet", "application/yaml", good, 400, "path is for Cluster"},
		{"name does not match path", "PUT", "/modeldeployments/other", "application/yaml", good, 400, `does not match the name "other"`},
		{"two objects", "POST", "/clusters", "application/yaml", clusterYAML("a", "") + "---\n" + clusterYAML("b", ""), 400, "exactly one object"},
		{"invalid version", "PUT", "/modeldeployments/resnet", "application/yaml", mdYAML("resnet", "resnet", "1.x.y", "[{}]"), 422, `spec.model.version: Invalid value: "1.x.y": not a semver version or range`},
		{"invalid selector", "PUT", "/modeldeployments/resnet", "application/yaml",
			mdYAML("resnet", "resnet", "^1", "[{matchExpressions: [{key: a, operator: Near}]}]"), 422, "spec.clusterSelectors[0].matchExpressions[0].operator"},
		{"invalid name", "POST", "/clusters", "application/yaml", clusterYAML("Edge_1", ""), 422, "metadata.name"},
		{"no such version", "PUT", "/modeldeployments/resnet", "application/yaml", mdYAML("resnet", "resnet", "^3", "[{}]"), 422, `spec.model.version: Invalid value: "^3": no version of model "resnet" matches`},
		{"no such model", "PUT", "/modeldeployments/resnet", "application/yaml", mdYAML("resnet", "gpt", "1.0.0", "[{}]"), 422, "spec.model.version"},
		{"unsigned version refused", "PUT", "/modeldeployments/resnet", "application/yaml",
			mdYAML("resnet", "resnet", "2.0.0", "[{}]") + "  requireSignature: true\n", 422, "valid signature from a trusted key"},
		{"oversized body", "PUT", "/modeldeployments/resnet", "application/yaml", good + "# " + strings.Repeat("x", 5000) + "\n", 413, "larger than 4096 bytes"},
		{"unknown resource", "PUT", "/widgets/p", "application/yaml", good, 404, `unknown resource "widgets"`},
		{"unknown path", "GET", "/clusters/edge-1/nothing", "", "", 404, "no API at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.revision()
			r := e.do(tt.method, tt.path, "writer", tt.ct, []byte(tt.body))
			st := decodeJSON[metav1.Status](t, r.body)
			if r.code != tt.wantCode || st.Kind != "Status" || st.Status != metav1.StatusFailure || int(st.Code) != tt.wantCode ||
				!strings.Contains(st.Message, tt.wantMsg) {
				t.Fatalf("got %d %s, want %d with %q", r.code, r.body, tt.wantCode, tt.wantMsg)
			}
			if after := e.revision(); after != before {
				t.Fatalf("revision moved %d -> %d on bad input", before, after)
			}
			if r := e.do(http.MethodGet, "/modeldeployments/resnet", "reader", "", nil); r.code != http.StatusNotFound {
				t.Fatalf("bad input stored a deployment: %d %s", r.code, r.body)
			}
		})
	}
	r := e.put("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.x.y", "[{}]"))
	st := decodeJSON[metav1.Status](t, r.body)
	if st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Field != "spec.model.version" {
		t.Fatalf("422 details = %+v", st.Details)
	}
}

func TestServerWideSignaturePolicy(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequireSignature = true })
	if r := e.put("modeldeployments", "bert", mdYAML("bert", "bert", "0.9.0", "[{}]")); r.code != http.StatusUnprocessableEntity {
		t.Fatalf("unsigned under hub policy = %d %s", r.code, r.body)
	}
	r := e.put("modeldeployments", "resnet", mdYAML("resnet", "resnet", ">=1.0 <3", "[{}]"))
	md := decodeJSON[v1alpha1.ModelDeployment](t, r.body)
	if r.code != http.StatusCreated || md.Status.ResolvedVersion != "1.2.0" {
		t.Fatalf("signed range = %d %s (want the highest signed version 1.2.0)", r.code, r.body)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name, method, path, token string
		want                      int
	}{
		{"no token", "GET", "/clusters", "", 401},
		{"bad token", "GET", "/clusters", "nope", 401},
		{"no token on unknown path", "GET", "/nothing", "", 401},
		{"no token on desired state", "GET", "/clusters/x/desiredstate", "", 401},
		{"reader reads", "GET", "/clusters", "reader", 200},
		{"reader writes", "PUT", "/clusters/edge-1", "reader", 403},
		{"reader deletes", "DELETE", "/clusters/edge-1", "reader", 403},
		{"reader writes status", "PUT", "/clusters/edge-1/status", "reader", 403},
		{"writer writes", "PUT", "/clusters/edge-1", "writer", 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.token, "application/yaml", []byte(clusterYAML("edge-1", "")))
			if r.code != tt.want {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, r.code, r.body, tt.want)
			}
			if tt.want == 401 && r.header.Get("WWW-Authenticate") != `Bearer realm="outpost"` {
				t.Fatalf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	base := strings.TrimSuffix(e.url, v1alpha1.APIPath)
	for _, p := range []string{"/healthz", "/v2/"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", p, resp.StatusCode)
		}
	}
}

func (e *env) desired(cluster string) v1alpha1.DesiredState {
	e.t.Helper()
	r := e.do(http.MethodGet, "/clusters/"+cluster+"/desiredstate?timeoutSeconds=0", "reader", "", nil)
	if r.code != http.StatusOK {
		e.t.Fatalf("desiredstate %s = %d %s", cluster, r.code, r.body)
	}
	return decodeJSON[v1alpha1.DesiredState](e.t, r.body)
}

func models(ds v1alpha1.DesiredState) string {
	var s []string
	for _, m := range ds.Models {
		s = append(s, m.Deployment+"="+m.Model+"@"+m.Version)
	}
	return strings.Join(s, ",")
}

func TestDesiredStatePerCluster(t *testing.T) {
	e := newEnv(t, nil)
	e.mustPut("clusters", "eu-1", clusterYAML("eu-1", "region: eu"))
	e.mustPut("clusters", "us-1", clusterYAML("us-1", "region: us"))
	e.mustPut("clusters", "lab", clusterYAML("lab", "tier: gpu"))
	// ORed selectors: region=eu OR tier=gpu.
	e.mustPut("modeldeployments", "resnet", mdYAML("resnet", "resnet", "^1", "[{matchLabels: {region: eu}}, {matchLabels: {tier: gpu}}]"))

	eu, us, lab := e.desired("eu-1"), e.desired("us-1"), e.desired("lab")
	if models(eu) != "resnet=resnet@1.2.0" || models(lab) != "resnet=resnet@1.2.0" || models(us) != "" {
		t.Fatalf("placement eu=%q us=%q lab=%q", models(eu), models(us), models(lab))
	}
	if eu.Kind != "DesiredState" || eu.Cluster != "eu-1" || eu.Models[0].Digest != "sha256:resnet-1.2.0" || eu.Models[0].SizeBytes == 0 {
		t.Fatalf("doc = %+v", eu)
	}

	// A deployment for us only changes us-1's document alone.
	e.mustPut("modeldeployments", "bert", mdYAML("bert", "bert", "0.9.0", "[{matchLabels: {region: us}}]"))
	if got := e.desired("eu-1"); got.Revision != eu.Revision {
		t.Errorf("eu-1 revision moved %d -> %d for an unrelated deployment", eu.Revision, got.Revision)
	}
	if got := e.desired("lab"); got.Revision != lab.Revision {
		t.Errorf("lab revision moved %d -> %d for an unrelated deployment", lab.Revision, got.Revision)
	}
	us2 := e.desired("us-1")
	if us2.Revision <= us.Revision || models(us2) != "bert=bert@0.9.0" {
		t.Fatalf("us-1 after bert = %d %q", us2.Revision, models(us2))
	}

	// Relabelling lab moves it from resnet to bert.
	e.mustPut("clusters", "lab", clusterYAML("lab", "region: us"))
	lab2 := e.desired("lab")
	if lab2.Revision <= lab.Revision || models(lab2) != "bert=bert@0.9.0" {
		t.Fatalf("lab after relabel = %d %q", lab2.Revision, models(lab2))
	}
	if got := e.desired("eu-1"); got.Revision != eu.Revision {
		t.Errorf("eu-1 revision moved on lab's relabel")
	}

	// The deployment status has a row per selected cluster.
	r := e.do(http.MethodGet, "/modeldeployments/bert", "reader", "", nil)
	md := decodeJSON[v1alpha1.ModelDeployment](t, r.body)
	if len(md.Status.Clusters) != 2 || md.Status.Clusters[0].Cluster != "lab" || md.Status.Clusters[1].Cluster != "us-1" ||
		md.Status.Clusters[0].DesiredVersion != "0.9.0" || md.Status.Clusters[0].Phase != v1alpha1.PhasePending {
		t.Fatalf("status.clusters = %+v", md.Status.Clusters)
	}
	if md.Spec.Rollout.Strategy != v1alpha1.RolloutAll || md.Spec.Serving.Runtime != v1alpha1.RuntimeAuto {
		t.Fatalf("defaults not applied: %+v", md.Spec)
	}
	if md.Status.ResolvedDigest != "sha256:bert-0.9.0" || md.Status.ObservedGeneration != 1 {
		t.Fatalf("status = %+v", md.Status)
	}
	for _, ct := range []string{v1alpha1.ConditionResolved, v1alpha1.ConditionPlaced} {
		if c := findCondition(md.Status.Conditions, ct); c == nil || c.Status != metav1.ConditionTrue {
			t.Errorf("condition %s = %+v", ct, c)
		}
	}

	// Agent-reported fields survive the hub's recomputation.
	md.Status.Clusters[1].Phase = v1alpha1.PhaseActive
	md.Status.Clusters[1].ActiveVersion = "0.9.0"
	md.ResourceVersion = ""
	b, _ := json.Marshal(md)
	if r := e.do(http.MethodPut, "/modeldeployments/bert/status", "writer", "application/json", b); r.code != http.StatusOK {
		t.Fatalf("PUT status = %d %s", r.code, r.body)
	}
	e.mustPut("clusters", "us-2", clusterYAML("us-2", "region: us"))
	r = e.do(http.MethodGet, "/modeldeployments/bert", "reader", "", nil)
	md = decodeJSON[v1alpha1.ModelDeployment](t, r.body)
	if len(md.Status.Clusters) != 3 || md.Status.Clusters[1].Phase != v1alpha1.PhaseActive || md.Status.Clusters[2].Phase != v1alpha1.PhasePending {
		t.Fatalf("status.clusters after new cluster = %+v", md.Status.Clusters)
	}

	// Deleting a cluster removes its document.
	if r := e.do(http.MethodDelete, "/clusters/lab", "writer", "", nil); r.code != http.StatusOK {
		t.Fatal(r.code)
	}
	if r := e.do(http.MethodGet, "/clusters/lab/desiredstate?timeoutSeconds=0", "reader", "", nil); r.code != http.StatusNotFound {
		t.Fatalf("deleted cluster desiredstate = %d", r.code)
	}
	if r := e.do(http.MethodGet, "/clusters/never/desiredstate", "reader", "", nil); r.code != http.StatusNotFound {
		t.Fatalf("unknown cluster desiredstate = %d", r.code)
	}
	// Deleting a deployment empties the documents it placed.
	if r := e.do(http.MethodDelete, "/modeldeployments/resnet", "writer", "", nil); r.code != http.StatusOK {
		t.Fatal(r.code)
	}
	if got := e.desired("eu-1"); got.Revision <= eu.Revision || len(got.Models) != 0 {
		t.Fatalf("eu-1 after deleting resnet = %+v", got)
	}
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

func TestModelsChanged(t *testing.T) {
	e := newEnv(t, nil)
	e.mustPut("clusters", "eu-1", clusterYAML("eu-1", "region: eu"))
	e.mustPut("modeldeployments", "resnet", mdYAML("resnet", "resnet", "^1", "[{}]"))
	before := e.desired("eu-1")

	// Nothing changed in the registry: nothing moves.
	if err := e.srv.ModelsChanged(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := e.desired("eu-1"); got.Revision != before.Revision {
		t.Fatalf("ModelsChanged with no change moved revision %d -> %d", before.Revision, got.Revision)
	}

	e.models.set("resnet", "1.4.0", false)
	if err := e.srv.ModelsChanged(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := e.desired("eu-1")
	if after.Revision <= before.Revision || models(after) != "resnet=resnet@1.4.0" {
		t.Fatalf("after new version: %d %q", after.Revision, models(after))
	}

	// The model disappears: the last resolution is kept and the condition says why.
	e.models.clear("resnet")
	if err := e.srv.ModelsChanged(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := e.do(http.MethodGet, "/modeldeployments/resnet", "reader", "", nil)
	md := decodeJSON[v1alpha1.ModelDeployment](t, r.body)
	c := findCondition(md.Status.Conditions, v1alpha1.ConditionResolved)
	if md.Status.ResolvedVersion != "1.4.0" || c == nil || c.Status != metav1.ConditionFalse || c.Reason != "ResolutionFailed" ||
		!strings.Contains(c.Message, "resnet") {
		t.Fatalf("status after model vanished = %+v", md.Status)
	}
	if got := e.desired("eu-1"); got.Revision != after.Revision {
		t.Fatalf("desired state moved although the resolution was kept")
	}
}

func TestRevisionMonotonic(t *testing.T) {
	e := newEnv(t, nil)
	last := int64(0)
	check := func(r response) {
		t.Helper()
		var m metav1.PartialObjectMetadata
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatal(err)
		}
		rv, err := strconv.ParseInt(m.ResourceVersion, 10, 64)
		if err != nil || rv <= last {
			t.Fatalf("resourceVersion %q after %d (%s)", m.ResourceVersion, last, r.body)
		}
		last = rv
	}
	check(e.put("clusters", "a", clusterYAML("a", "x: '1'")))
	check(e.put("modeldeployments", "m", mdYAML("m", "resnet", "1.0.0", "[{}]")))
	check(e.put("clusters", "a", clusterYAML("a", "x: '2'")))
	check(e.put("modeldeployments", "m", mdYAML("m", "resnet", "1.2.0", "[{}]")))
	check(e.do(http.MethodDelete, "/clusters/a", "writer", "", nil))
	check(e.put("clusters", "a", clusterYAML("a", "")))
}

func TestSurvivesRestart(t *testing.T) {
	e := newEnv(t, nil)
	e.mustPut("clusters", "eu-1", clusterYAML("eu-1", "region: eu"))
	e.mustPut("modeldeployments", "resnet", mdYAML("resnet", "resnet", "^1", "[{}]"))
	before := e.desired("eu-1")
	rev := e.revision()
	e.db.Close()

	db, err := store.Open(t.Context(), e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := New(t.Context(), Config{DB: db, Models: e.models})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	e2 := &env{t: t, srv: srv, db: db, models: e.models, url: ts.URL + v1alpha1.APIPath}
	if got := e2.desired("eu-1"); got.Revision != before.Revision || models(got) != models(before) {
		t.Fatalf("after restart %+v, want %+v", got, before)
	}
	if got := e2.revision(); got != rev {
		t.Fatalf("restart moved the revision %d -> %d", rev, got)
	}
}

// longPoll starts a GET in a goroutine and returns a channel with its response.
func (e *env) longPoll(path string) <-chan response {
	ch := make(chan response, 1)
	go func() {
		req, err := http.NewRequestWithContext(e.t.Context(), http.MethodGet, e.url+path, nil)
		if err != nil {
			ch <- response{code: -1, body: []byte(err.Error())}
			return
		}
		req.Header.Set("Authorization", "Bearer reader")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- response{code: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- response{resp.StatusCode, resp.Header, b}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan response, d time.Duration) response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("no response within %v", d)
	}
	return response{}
}

// newPollEnv is newEnv on a fake clock and without the offline watcher, so
// that the clock's only timers are the long-polls'.
func newPollEnv(t *testing.T) (*env, *clock.Fake) {
	clk := clock.NewFake(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	return newEnv(t, func(c *Config) { c.Clock, c.OfflineAfter = clk, -1 }), clk
}

// startPoll starts a long-poll of path and returns once it waits on clk.
func (e *env) startPoll(clk *clock.Fake, path string) <-chan response {
	e.t.Helper()
	// The timers of polls answered earlier are stopped once their handlers return.
	for deadline := time.Now().Add(10 * time.Second); clk.Pending() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatal("an answered long-poll's timer is still pending")
		}
	}
	ch := e.longPoll(path)
	if err := clk.WaitPending(e.t.Context(), 1); err != nil {
		e.t.Fatal(err)
	}
	return ch
}

func TestDesiredStateLongPoll(t *testing.T) {
	e, clk := newPollEnv(t)
	e.mustPut("clusters", "eu-1", clusterYAML("eu-1", "region: eu"))
	cur := e.desired("eu-1")

	ch := e.startPoll(clk, fmt.Sprintf("/clusters/eu-1/desiredstate?after=%d&timeoutSeconds=60", cur.Revision))
	e.mustPut("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.0.0", "[{matchLabels: {region: eu}}]"))
	r := wait(t, ch, 20*time.Second)
	ds := decodeJSON[v1alpha1.DesiredState](t, r.body)
	if r.code != http.StatusOK || ds.Revision <= cur.Revision || models(ds) != "resnet=resnet@1.0.0" {
		t.Fatalf("long-poll = %d %s", r.code, r.body)
	}

	// Unchanged: times out with 304.
	ch = e.startPoll(clk, fmt.Sprintf("/clusters/eu-1/desiredstate?after=%d&timeoutSeconds=1", ds.Revision))
	clk.Advance(time.Second)
	if r := wait(t, ch, 20*time.Second); r.code != http.StatusNotModified {
		t.Fatalf("timed-out long-poll = %d %s", r.code, r.body)
	}
	// A change elsewhere does not wake the poll: the channel it waits on,
	// which only a change to eu-1's desired state closes, stays open (the
	// hub publishes a commit's changes before answering the write), and
	// the poll times out unchanged.
	ch = e.startPoll(clk, fmt.Sprintf("/clusters/eu-1/desiredstate?after=%d&timeoutSeconds=1", ds.Revision))
	waiting, _, _ := e.db.DesiredChanged("eu-1")
	e.mustPut("clusters", "us-1", clusterYAML("us-1", "region: us"))
	select {
	case <-waiting:
		t.Fatal("a change to another cluster woke eu-1's long-poll")
	default:
	}
	clk.Advance(time.Second)
	if r := wait(t, ch, 20*time.Second); r.code != http.StatusNotModified {
		t.Fatalf("long-poll after an unrelated change = %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodGet, "/clusters/eu-1/desiredstate?after=x", "reader", "", nil); r.code != http.StatusBadRequest {
		t.Fatalf("bad after = %d", r.code)
	}
}

func TestWatch(t *testing.T) {
	e, clk := newPollEnv(t)
	e.mustPut("clusters", "a", clusterYAML("a", "region: eu"))
	rev := e.revision()

	ch := e.startPoll(clk, fmt.Sprintf("/clusters?watch=true&resourceVersion=%d&timeoutSeconds=60", rev))
	e.mustPut("clusters", "b", clusterYAML("b", "region: us"))
	r := wait(t, ch, 20*time.Second)
	l := decodeJSON[v1alpha1.WatchEventList](t, r.body)
	if r.code != http.StatusOK || len(l.Items) != 1 || l.Items[0].Type != "ADDED" {
		t.Fatalf("watch = %d %s", r.code, r.body)
	}
	obj := decodeJSON[v1alpha1.Cluster](t, l.Items[0].Object)
	if obj.Name != "b" || l.ResourceVersion == "" {
		t.Fatalf("watch event = %s", r.body)
	}
	next, _ := strconv.ParseInt(l.ResourceVersion, 10, 64)

	// Label-selected watch skips other objects' changes.
	ch = e.startPoll(clk, fmt.Sprintf("/clusters?watch=true&resourceVersion=%d&timeoutSeconds=60&labelSelector=region%%3Deu", next))
	e.mustPut("clusters", "b", clusterYAML("b", "region: us, x: z"))
	e.do(http.MethodDelete, "/clusters/a", "writer", "", nil)
	r = wait(t, ch, 20*time.Second)
	l = decodeJSON[v1alpha1.WatchEventList](t, r.body)
	if len(l.Items) != 1 || l.Items[0].Type != "DELETED" {
		t.Fatalf("selected watch = %s", r.body)
	}

	// Nothing new: an empty list at the current revision after the timeout.
	cur := e.revision()
	ch = e.startPoll(clk, fmt.Sprintf("/clusters?watch=true&resourceVersion=%d&timeoutSeconds=1", cur))
	clk.Advance(time.Second)
	r = wait(t, ch, 20*time.Second)
	l = decodeJSON[v1alpha1.WatchEventList](t, r.body)
	if r.code != http.StatusOK || len(l.Items) != 0 || l.ResourceVersion != strconv.FormatInt(cur, 10) {
		t.Fatalf("timed-out watch = %d %s", r.code, r.body)
	}
}

func TestNewRequiresDB(t *testing.T) {
	if _, err := New(t.Context(), Config{}); err == nil {
		t.Fatal("New without DB succeeded")
	}
}
