package hub

import (
	"context"
	"errors"
	"math"
	"slices"

	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/store"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/auth"
)

// agentEnv is a hub with the real authenticator: an admin token and cluster credentials
// from the store. Its registry stand-in authorizes like the real registry.
type agentEnv struct {
	*env
	admin string
	clock *clock.Fake
	base  string // the server's URL without the API prefix
}

func newAgentEnv(t testing.TB, mutate func(*Config), opts ...store.Option) *agentEnv {
	t.Helper()
	admin, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	e := newEnv(t, func(cfg *Config) {
		authn := auth.NewAuthenticator(auth.Hash(admin), auth.WithClusterCredentials(cfg.DB))
		cfg.Authorize = authn.Authorize
		cfg.Registry = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := authn.Authorize(r, r.Method != http.MethodGet && r.Method != http.MethodHead); err != nil {
				code := http.StatusUnauthorized
				if strings.Contains(err.Error(), auth.ErrForbidden.Error()) {
					code = http.StatusForbidden
				}
				http.Error(w, err.Error(), code)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		cfg.Clock = clk
		cfg.Logger = slog.New(slog.DiscardHandler)
		cfg.OfflineAfter = -1 // tests call markOffline themselves
		if mutate != nil {
			mutate(cfg)
		}
	}, opts...)
	return &agentEnv{env: e, admin: admin, clock: clk, base: strings.TrimSuffix(e.url, v1alpha1.APIPath)}
}

func (e *agentEnv) postJSON(path, token string, v any) response {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(http.MethodPost, path, token, "application/json", b)
}

func (e *agentEnv) createToken(ttlSeconds int64, description string) v1alpha1.JoinToken {
	e.t.Helper()
	r := e.postJSON("/jointokens", e.admin, v1alpha1.JoinTokenRequest{
		APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindJoinTokenCreate, TTLSeconds: ttlSeconds, Description: description,
	})
	if r.code != http.StatusCreated {
		e.t.Fatalf("create join token = %d %s", r.code, r.body)
	}
	return decodeJSON[v1alpha1.JoinToken](e.t, r.body)
}

func (e *agentEnv) join(token, cluster string, labels map[string]string) response {
	e.t.Helper()
	return e.postJSON("/join", "", v1alpha1.JoinRequest{
		APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindJoinRequest, Token: token, Cluster: cluster, Labels: labels,
	})
}

func (e *agentEnv) mustJoin(token, cluster string, labels map[string]string) string {
	e.t.Helper()
	r := e.join(token, cluster, labels)
	if r.code != http.StatusOK {
		e.t.Fatalf("join %s = %d %s", cluster, r.code, r.body)
	}
	jr := decodeJSON[v1alpha1.JoinResponse](e.t, r.body)
	if jr.Kind != v1alpha1.KindJoinResponse || jr.Cluster != cluster || !strings.HasPrefix(jr.Credential, auth.ClusterCredentialPrefix) {
		e.t.Fatalf("join answer %s", r.body)
	}
	return jr.Credential
}

func (e *agentEnv) registry(method, path, token string) int {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (e *agentEnv) cluster(name string) *v1alpha1.Cluster {
	e.t.Helper()
	o, err := e.db.Get(e.t.Context(), v1alpha1.KindCluster, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o.(*v1alpha1.Cluster)
}

func (e *agentEnv) deployment(name string) *v1alpha1.ModelDeployment {
	e.t.Helper()
	o, err := e.db.Get(e.t.Context(), v1alpha1.KindModelDeployment, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o.(*v1alpha1.ModelDeployment)
}

func (e *agentEnv) desiredRevision(cluster string) int64 {
	e.t.Helper()
	rev, _, err := e.db.DesiredState(e.t.Context(), cluster)
	if err != nil {
		e.t.Fatal(err)
	}
	return rev
}

func (e *agentEnv) applyAsAdmin(plural, name, yamlBody string) {
	e.t.Helper()
	if r := e.do(http.MethodPut, "/"+plural+"/"+name, e.admin, "application/yaml", []byte(yamlBody)); r.code != http.StatusOK && r.code != http.StatusCreated {
		e.t.Fatalf("PUT %s/%s = %d %s", plural, name, r.code, r.body)
	}
}

func statusMessage(t *testing.T, b []byte) string {
	t.Helper()
	return decodeJSON[metav1.Status](t, b).Message
}

func TestJoinTokensNeedAdmin(t *testing.T) {
	e := newAgentEnv(t, nil)
	jt := e.createToken(0, "north rollout")
	if !strings.HasPrefix(jt.Token, auth.JoinTokenPrefix) || jt.ID == "" || jt.Kind != v1alpha1.KindJoinToken ||
		!jt.Expires.Time.Equal(e.clock.Now().Add(DefaultJoinTokenTTL)) || jt.Description != "north rollout" {
		t.Fatalf("created token = %+v", jt)
	}
	if long := e.createToken(int64((365 * 24 * time.Hour).Seconds()), ""); !long.Expires.Time.Equal(e.clock.Now().Add(MaxJoinTokenTTL)) {
		t.Errorf("a year's TTL expires %s, want capped at %s", long.Expires, e.clock.Now().Add(MaxJoinTokenTTL))
	}
	if longest := e.createToken(math.MaxInt64/int64(time.Second), ""); !longest.Expires.Time.Equal(e.clock.Now().Add(MaxJoinTokenTTL)) {
		t.Errorf("the longest TTL expires %s, want capped at %s", longest.Expires, e.clock.Now().Add(MaxJoinTokenTTL))
	}
	if short := e.createToken(90, ""); !short.Expires.Time.Equal(e.clock.Now().Add(90 * time.Second)) {
		t.Errorf("90 s TTL expires %s", short.Expires)
	}
	cred := e.mustJoin(jt.Token, "edge-1", nil)

	create := `{"apiVersion":"ml.outpost.dev/v1alpha1","kind":"JoinTokenRequest","ttlSeconds":60}`
	tests := []struct {
		name, method, path, token, body string
		want                            int
		wantMsg                         string
	}{
		{"create without token", http.MethodPost, "/jointokens", "", create, http.StatusUnauthorized, "no token"},
		{"create with unknown token", http.MethodPost, "/jointokens", "opt_nope", create, http.StatusUnauthorized, "not recognised"},
		{"create with a join token", http.MethodPost, "/jointokens", jt.Token, create, http.StatusUnauthorized, "only serves to join"},
		{"create with a cluster credential", http.MethodPost, "/jointokens", cred, create, http.StatusForbidden, `cluster "edge-1" may not POST`},
		{"list with a cluster credential", http.MethodGet, "/jointokens", cred, "", http.StatusForbidden, `cluster "edge-1" may not GET`},
		{"list without token", http.MethodGet, "/jointokens", "", "", http.StatusUnauthorized, "no token"},
		{"delete with a cluster credential", http.MethodDelete, "/jointokens/" + jt.ID, cred, "", http.StatusForbidden, "may not DELETE"},
		{"negative TTL", http.MethodPost, "/jointokens", e.admin, `{"ttlSeconds":-5}`, http.StatusUnprocessableEntity, "ttlSeconds"},
		{"TTL overflowing a duration", http.MethodPost, "/jointokens", e.admin, `{"ttlSeconds":9223372036854775807}`, http.StatusUnprocessableEntity, "ttlSeconds: Invalid value: 9223372036854775807: must be at most 9223372036"},
		{"TTL a second too long to count", http.MethodPost, "/jointokens", e.admin, `{"ttlSeconds":9223372037}`, http.StatusUnprocessableEntity, "must be at most 9223372036"},
		{"unknown field", http.MethodPost, "/jointokens", e.admin, `{"ttl":"1h"}`, http.StatusBadRequest, `unknown field "ttl"`},
		{"wrong kind", http.MethodPost, "/jointokens", e.admin, `{"kind":"Cluster"}`, http.StatusUnprocessableEntity, "kind"},
		{"long description", http.MethodPost, "/jointokens", e.admin, `{"description":"` + strings.Repeat("x", 300) + `"}`,
			http.StatusUnprocessableEntity, "description"},
		{"delete unknown", http.MethodDelete, "/jointokens/nope", e.admin, "", http.StatusNotFound, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.token, "application/json", []byte(tt.body))
			if r.code != tt.want || !strings.Contains(statusMessage(t, r.body), tt.wantMsg) {
				t.Errorf("%s %s = %d %s, want %d with %q", tt.method, tt.path, r.code, r.body, tt.want, tt.wantMsg)
			}
		})
	}

	r := e.do(http.MethodGet, "/jointokens", e.admin, "", nil)
	if r.code != http.StatusOK || strings.Contains(string(r.body), auth.JoinTokenPrefix) {
		t.Fatalf("list = %d %s (must not reveal secrets)", r.code, r.body)
	}
	l := decodeJSON[v1alpha1.JoinTokenList](t, r.body)
	if len(l.Items) != 4 || l.Kind != v1alpha1.KindJoinTokenList || l.Items[0].ID != jt.ID || l.Items[0].Description != "north rollout" {
		t.Fatalf("list = %s", r.body)
	}

	// A deleted token no longer joins; the cluster that joined with it keeps its credential.
	if r := e.do(http.MethodDelete, "/jointokens/"+jt.ID, e.admin, "", nil); r.code != http.StatusOK {
		t.Fatalf("delete = %d %s", r.code, r.body)
	}
	if r := e.join(jt.Token, "edge-2", nil); r.code != http.StatusUnauthorized {
		t.Errorf("join with deleted token = %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodGet, "/clusters/edge-1/desiredstate?timeoutSeconds=0", cred, "", nil); r.code != http.StatusOK {
		t.Errorf("desired state after token deletion = %d %s", r.code, r.body)
	}
}

func TestJoinCreatesClusterAndScopedCredential(t *testing.T) {
	e := newAgentEnv(t, nil)
	e.applyAsAdmin("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.2.0", "[{matchLabels: {region: north}}]"))
	// An operator declared edge-2 before its agent joined; joining merges labels and keeps the spec.
	e.applyAsAdmin("clusters", "edge-2", "apiVersion: ml.outpost.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: edge-2\n  labels: {site: plant-7, region: south}\nspec:\n  displayName: Plant 7\n")
	jt := e.createToken(3600, "")

	cred1 := e.mustJoin(jt.Token, "edge-1", map[string]string{"region": "north", "tier": "gpu"})
	if c := e.cluster("edge-1"); c.Labels["region"] != "north" || c.Labels["tier"] != "gpu" {
		t.Fatalf("joined cluster labels = %v", c.Labels)
	}
	cred2 := e.mustJoin(jt.Token, "edge-2", map[string]string{"region": "north"})
	if c := e.cluster("edge-2"); c.Labels["region"] != "north" || c.Labels["site"] != "plant-7" || c.Spec.DisplayName != "Plant 7" {
		t.Fatalf("merged cluster = labels %v, spec %+v", c.Labels, c.Spec)
	}
	if cred1 == cred2 {
		t.Fatal("two clusters got the same credential")
	}

	// Joining is an apply: placement ran, the desired state names the model.
	r := e.do(http.MethodGet, "/clusters/edge-1/desiredstate?after=0&timeoutSeconds=0", cred1, "", nil)
	ds := decodeJSON[v1alpha1.DesiredState](t, r.body)
	if r.code != http.StatusOK || len(ds.Models) != 1 || ds.Models[0].Version != "1.2.0" {
		t.Fatalf("own desired state = %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodGet, "/clusters/edge-1", cred1, "", nil); r.code != http.StatusOK {
		t.Errorf("own Cluster = %d %s", r.code, r.body)
	}
	if md := e.deployment("resnet"); len(md.Status.Clusters) != 2 {
		t.Errorf("deployment rows = %+v", md.Status.Clusters)
	}

	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/v2/", http.StatusOK},
		{http.MethodGet, "/v2/_catalog", http.StatusOK},
		{http.MethodHead, "/v2/models/resnet/blobs/sha256:abc", http.StatusOK},
		{http.MethodGet, "/v2/models/resnet/manifests/1.2.0", http.StatusOK},
		{http.MethodPost, "/v2/models/resnet/blobs/uploads/", http.StatusForbidden},
		{http.MethodPut, "/v2/models/resnet/manifests/9.9.9", http.StatusForbidden},
		{http.MethodDelete, "/v2/models/resnet/manifests/1.2.0", http.StatusForbidden},
	} {
		if got := e.registry(tt.method, tt.path, cred1); got != tt.want {
			t.Errorf("registry %s %s with a cluster credential = %d, want %d", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestJoinRefused(t *testing.T) {
	e := newAgentEnv(t, nil)
	jt := e.createToken(3600, "")
	expires := jt.Expires.UTC().Format(time.RFC3339)
	tests := []struct {
		name    string
		body    string
		advance time.Duration
		want    int
		wantMsg string
		field   string
	}{
		{"no token", `{"cluster":"edge-1"}`, 0, http.StatusUnauthorized, "join request has no token", ""},
		{"wrong token", `{"token":"opj_wrong","cluster":"edge-1"}`, 0, http.StatusUnauthorized, "join token not recognised", ""},
		{"admin token", fmt.Sprintf(`{"token":%q,"cluster":"edge-1"}`, e.admin), 0, http.StatusUnauthorized, "join token not recognised", ""},
		{"bad cluster name", fmt.Sprintf(`{"token":%q,"cluster":"Edge_1"}`, jt.Token), 0, http.StatusUnprocessableEntity, "cluster", "cluster"},
		{"no cluster name", fmt.Sprintf(`{"token":%q}`, jt.Token), 0, http.StatusUnprocessableEntity, "cluster", "cluster"},
		{"bad label", fmt.Sprintf(`{"token":%q,"cluster":"edge-1","labels":{"bad key!":"x"}}`, jt.Token), 0,
			http.StatusUnprocessableEntity, "labels", "labels[bad key!]"},
		{"bad label value", fmt.Sprintf(`{"token":%q,"cluster":"edge-1","labels":{"region":"no spaces"}}`, jt.Token), 0,
			http.StatusUnprocessableEntity, "labels", "labels[region]"},
		{"unknown field", fmt.Sprintf(`{"token":%q,"name":"edge-1"}`, jt.Token), 0, http.StatusBadRequest, `unknown field "name"`, ""},
		{"wrong kind", fmt.Sprintf(`{"kind":"Cluster","token":%q,"cluster":"edge-1"}`, jt.Token), 0, http.StatusUnprocessableEntity, "kind", "kind"},
		// Last: moves the clock past the token's expiry.
		{"expired token", fmt.Sprintf(`{"token":%q,"cluster":"edge-1"}`, jt.Token), time.Hour, http.StatusUnauthorized,
			"join token expired at " + expires, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(tt.advance)
			r := e.do(http.MethodPost, "/join", "", "application/json", []byte(tt.body))
			st := decodeJSON[metav1.Status](t, r.body)
			if r.code != tt.want || !strings.Contains(st.Message, tt.wantMsg) {
				t.Fatalf("join = %d %s, want %d with %q", r.code, r.body, tt.want, tt.wantMsg)
			}
			if tt.field != "" && (st.Details == nil || len(st.Details.Causes) == 0 || st.Details.Causes[0].Field != tt.field) {
				t.Errorf("causes = %+v, want field %q", st.Details, tt.field)
			}
		})
	}
	objs, _, err := e.db.List(t.Context(), v1alpha1.KindCluster, nil)
	if err != nil || len(objs) != 0 {
		t.Fatalf("refused joins created clusters: %v %v", objs, err)
	}
}

func TestClusterCredentialScope(t *testing.T) {
	e := newAgentEnv(t, nil)
	jt := e.createToken(3600, "")
	a := e.mustJoin(jt.Token, "a", nil)
	e.mustJoin(jt.Token, "b", nil)
	report := `{"kind":"AgentReport","cluster":"b","status":{}}`
	tests := []struct {
		name, method, path, body string
		wantMsg                  string
	}{
		{"read another's desired state", http.MethodGet, "/clusters/b/desiredstate?timeoutSeconds=0", "",
			`cluster "a" may not read the desired state of cluster "b"`},
		{"report for another", http.MethodPost, "/clusters/b/report", report, `cluster "a" may not report for cluster "b"`},
		{"read another cluster", http.MethodGet, "/clusters/b", "", `cluster "a" may not read cluster "b"`},
		{"list clusters", http.MethodGet, "/clusters", "", `cluster "a" may not GET`},
		{"watch", http.MethodGet, "/modeldeployments?watch=true", "", `cluster "a" may not GET`},
		{"apply a resource", http.MethodPut, "/clusters/a", `{"kind":"Cluster","apiVersion":"ml.outpost.dev/v1alpha1","metadata":{"name":"a"}}`,
			`cluster "a" may not PUT`},
		{"apply a deployment", http.MethodPost, "/modeldeployments", mdYAML("x", "resnet", "1.2.0", "[]"), `cluster "a" may not POST`},
		{"write own status directly", http.MethodPut, "/clusters/a/status", `{"kind":"Cluster","metadata":{"name":"a"}}`, "may not PUT"},
		{"delete itself", http.MethodDelete, "/clusters/a", "", "may not DELETE"},
		{"unknown path", http.MethodGet, "/nothing/here/at/all", "", "may not GET"},
		{"dot segments", http.MethodGet, "/clusters/a/../b/desiredstate", "", "may not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, a, "application/json", []byte(tt.body))
			if r.code != http.StatusForbidden && !(tt.name == "dot segments" && r.code/100 == 3) {
				t.Fatalf("%s %s = %d %s, want 403", tt.method, tt.path, r.code, r.body)
			}
			if r.code == http.StatusForbidden && !strings.Contains(statusMessage(t, r.body), tt.wantMsg) {
				t.Errorf("message = %s, want %q", r.body, tt.wantMsg)
			}
		})
	}
	if c := e.cluster("b"); c.Status.Link.LastSeen != nil {
		t.Errorf("a's refused report changed b: %+v", c.Status)
	}
}

func TestReport(t *testing.T) {
	e := newAgentEnv(t, nil)
	e.applyAsAdmin("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.2.0", "[{matchLabels: {region: north}}]"))
	e.applyAsAdmin("modeldeployments", "bert", mdYAML("bert", "bert", "0.9.0", "[{matchLabels: {region: south}}]"))
	jt := e.createToken(3600, "")
	cred := e.mustJoin(jt.Token, "edge-1", map[string]string{"region": "north"})
	credB := e.mustJoin(jt.Token, "edge-2", map[string]string{"region": "south"})
	revA, revB := e.desiredRevision("edge-1"), e.desiredRevision("edge-2")
	bertBefore := e.deployment("bert")

	cpu := resource.MustParse("4")
	rep := v1alpha1.AgentReport{
		APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindAgentReport, Cluster: "edge-1", AppliedRevision: revA, RejectedStale: 2,
		Status: v1alpha1.ClusterStatus{
			Capacity:        v1alpha1.Capacity{CPU: &cpu},
			Link:            v1alpha1.LinkStatus{BandwidthBps: 1 << 20, RTTMillis: 80, State: v1alpha1.LinkDegraded},
			CachedArtifacts: []v1alpha1.CachedArtifact{{Digest: "sha256:resnet-1.2.0", Model: "resnet", Version: "1.2.0", SizeBytes: 500}},
			AgentVersion:    "test",
		},
		Models: []v1alpha1.ModelReport{
			{Deployment: "resnet", Model: "resnet", DesiredVersion: "1.2.0", ActiveVersion: "1.0.0", Phase: v1alpha1.PhaseFetching,
				BytesFetched: 100, BytesTotal: 300, Error: "slow link"},
			{Deployment: "gone", Model: "x", Phase: v1alpha1.PhaseActive},
			{Deployment: "bert", Model: "bert", Phase: v1alpha1.PhaseActive, ActiveVersion: "0.9.0"},
		},
		ReportedAt: metav1.NewTime(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)), // the agent's clock is wrong; the hub's counts
	}
	e.clock.Advance(3 * time.Second)
	r := e.postJSON("/clusters/edge-1/report", cred, rep)
	if r.code != http.StatusOK {
		t.Fatalf("report = %d %s", r.code, r.body)
	}
	resp := decodeJSON[v1alpha1.ReportResponse](t, r.body)
	if resp.Revision != e.revision() || resp.DesiredStateRevision != revA {
		t.Errorf("report answer %s, want revision %d, desired %d", r.body, e.revision(), revA)
	}
	now := e.clock.Now()

	c := e.cluster("edge-1")
	st := c.Status
	if st.Link.State != v1alpha1.LinkConnected || st.Link.LastSeen == nil || !st.Link.LastSeen.Time.Equal(now) ||
		st.Link.BandwidthBps != 1<<20 || st.Link.RTTMillis != 80 || st.Capacity.CPU.String() != "4" ||
		len(st.CachedArtifacts) != 1 || st.AgentVersion != "test" {
		t.Fatalf("cluster status = %+v", st)
	}
	if sc := meta.FindStatusCondition(st.Conditions, ConditionSynced); sc == nil || sc.Status != metav1.ConditionTrue ||
		!strings.Contains(sc.Message, "rejected 2 stale") {
		t.Errorf("Synced condition = %+v", sc)
	}
	row := e.deployment("resnet").Status.Clusters[0]
	if row.Cluster != "edge-1" || row.DesiredVersion != "1.2.0" || row.ActiveVersion != "1.0.0" || row.Phase != v1alpha1.PhaseFetching ||
		row.BytesFetched != 100 || row.BytesTotal != 300 || row.Error != "slow link" || row.LastContact == nil || !row.LastContact.Time.Equal(now) {
		t.Errorf("deployment row = %+v", row)
	}
	if bert := e.deployment("bert"); bert.ResourceVersion != bertBefore.ResourceVersion {
		t.Errorf("a report from a cluster bert does not select changed bert: %+v", bert.Status.Clusters)
	}
	if a, b := e.desiredRevision("edge-1"), e.desiredRevision("edge-2"); a != revA || b != revB {
		t.Errorf("desired-state revisions after a report = %d, %d; want %d, %d", a, b, revA, revB)
	}
	if r := e.do(http.MethodGet, fmt.Sprintf("/clusters/edge-1/desiredstate?after=%d&timeoutSeconds=0", revA), cred, "", nil); r.code != http.StatusNotModified {
		t.Errorf("long-poll after a report = %d, want 304", r.code)
	}

	// A new version is placed: the row is Pending; a report about the old one updates only
	// what the cluster serves and when it was heard from.
	e.applyAsAdmin("modeldeployments", "resnet", mdYAML("resnet", "resnet", "2.0.0", "[{matchLabels: {region: north}}]"))
	if row := e.deployment("resnet").Status.Clusters[0]; row.Phase != v1alpha1.PhasePending || row.DesiredVersion != "2.0.0" ||
		row.ActiveVersion != "1.0.0" || row.Error != "" {
		t.Fatalf("row after new version = %+v", row)
	}
	e.clock.Advance(time.Second)
	rep.Models = []v1alpha1.ModelReport{{Deployment: "resnet", DesiredVersion: "1.2.0", ActiveVersion: "1.2.0", Phase: v1alpha1.PhaseActive}}
	if r := e.postJSON("/clusters/edge-1/report", cred, rep); r.code != http.StatusOK {
		t.Fatalf("report = %d %s", r.code, r.body)
	}
	if row := e.deployment("resnet").Status.Clusters[0]; row.Phase != v1alpha1.PhasePending || row.ActiveVersion != "1.2.0" ||
		!row.LastContact.Time.Equal(e.clock.Now()) {
		t.Errorf("row after a report on the old version = %+v", row)
	}
	if sc := meta.FindStatusCondition(e.cluster("edge-1").Status.Conditions, ConditionSynced); sc == nil || sc.Status != metav1.ConditionFalse {
		t.Errorf("Synced after the hub moved on = %+v", sc)
	}

	bad := func(mut func(*v1alpha1.AgentReport)) v1alpha1.AgentReport {
		r := rep
		r.Status = *rep.Status.DeepCopy()
		r.Models = append([]v1alpha1.ModelReport(nil), rep.Models...)
		mut(&r)
		return r
	}
	tests := []struct {
		name, path, token string
		body              any
		want              int
		wantMsg           string
	}{
		{"unknown cluster", "/clusters/ghost/report", e.admin, bad(func(r *v1alpha1.AgentReport) { r.Cluster = "ghost" }), http.StatusNotFound, `cluster "ghost" not found`},
		{"cluster not the path's", "/clusters/edge-1/report", cred, bad(func(r *v1alpha1.AgentReport) { r.Cluster = "edge-2" }), http.StatusBadRequest, "path names"},
		{"bad phase", "/clusters/edge-1/report", cred, bad(func(r *v1alpha1.AgentReport) { r.Models[0].Phase = "Dancing" }), http.StatusUnprocessableEntity, "models[0].phase"},
		{"negative bytes", "/clusters/edge-1/report", cred, bad(func(r *v1alpha1.AgentReport) { r.Models[0].BytesFetched = -1 }), http.StatusUnprocessableEntity, "models[0].bytesFetched"},
		{"duplicate deployment", "/clusters/edge-1/report", cred, bad(func(r *v1alpha1.AgentReport) { r.Models = append(r.Models, r.Models[0]) }), http.StatusUnprocessableEntity, "models[1].deployment"},
		{"negative bandwidth", "/clusters/edge-1/report", cred, bad(func(r *v1alpha1.AgentReport) { r.Status.Link.BandwidthBps = -1 }), http.StatusUnprocessableEntity, "status.link.bandwidthBps"},
		{"negative revision", "/clusters/edge-1/report", cred, bad(func(r *v1alpha1.AgentReport) { r.AppliedRevision = -1 }), http.StatusUnprocessableEntity, "appliedRevision"},
		{"wrong kind", "/clusters/edge-1/report", cred, bad(func(r *v1alpha1.AgentReport) { r.Kind = "Cluster" }), http.StatusUnprocessableEntity, "kind"},
		{"too large", "/clusters/edge-1/report", cred, bad(func(r *v1alpha1.AgentReport) { r.Models[0].Error = strings.Repeat("x", DefaultMaxBodyBytes) }), http.StatusRequestEntityTooLarge, "larger than"},
		{"not JSON", "/clusters/edge-1/report", cred, "{", http.StatusBadRequest, "decoding"},
		{"other cluster's credential", "/clusters/edge-1/report", credB, rep, http.StatusForbidden, `cluster "edge-2" may not report for cluster "edge-1"`},
	}
	before := e.revision()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if s, ok := tt.body.(string); ok {
				body = []byte(s)
			} else {
				body, _ = json.Marshal(tt.body)
			}
			r := e.do(http.MethodPost, tt.path, tt.token, "application/json", body)
			if r.code != tt.want || !strings.Contains(statusMessage(t, r.body), tt.wantMsg) {
				t.Errorf("report = %d %.300s, want %d with %q", r.code, r.body, tt.want, tt.wantMsg)
			}
		})
	}
	if after := e.revision(); after != before {
		t.Errorf("refused reports changed the hub: revision %d -> %d", before, after)
	}
}

func TestOfflineMarking(t *testing.T) {
	e := newAgentEnv(t, func(cfg *Config) {
		cfg.OfflineAfter = time.Minute
		cfg.OfflineCheckInterval = 1000 * time.Hour // the test calls markOffline itself
	})
	jt := e.createToken(3600, "")
	cred := e.mustJoin(jt.Token, "edge-1", nil)
	e.mustJoin(jt.Token, "never-reported", nil)
	report := func() {
		t.Helper()
		r := e.postJSON("/clusters/edge-1/report", cred, v1alpha1.AgentReport{Kind: v1alpha1.KindAgentReport, Cluster: "edge-1"})
		if r.code != http.StatusOK {
			t.Fatalf("report = %d %s", r.code, r.body)
		}
	}
	report()
	revA := e.desiredRevision("edge-1")

	e.clock.Advance(time.Minute) // exactly the limit: still connected
	if marked, err := e.srv.markOffline(t.Context()); err != nil || len(marked) != 0 {
		t.Fatalf("markOffline at the limit = %v, %v", marked, err)
	}
	e.clock.Advance(time.Second)
	if marked, err := e.srv.markOffline(t.Context()); err != nil || len(marked) != 1 || marked[0] != "edge-1" {
		t.Fatalf("markOffline past the limit = %v, %v", marked, err)
	}
	if st := e.cluster("edge-1").Status.Link; st.State != v1alpha1.LinkDisconnected {
		t.Fatalf("link after silence = %+v", st)
	}
	if st := e.cluster("never-reported").Status.Link; st.State != "" {
		t.Errorf("a cluster never seen was marked: %+v", st)
	}
	// Once: a second pass writes nothing.
	rev := e.revision()
	e.clock.Advance(time.Hour)
	if marked, err := e.srv.markOffline(t.Context()); err != nil || len(marked) != 0 || e.revision() != rev {
		t.Fatalf("second markOffline = %v, %v (revision %d -> %d)", marked, err, rev, e.revision())
	}
	if e.desiredRevision("edge-1") != revA {
		t.Error("offline marking changed the desired state")
	}
	report()
	if st := e.cluster("edge-1").Status.Link; st.State != v1alpha1.LinkConnected {
		t.Fatalf("link after a new report = %+v", st)
	}
}

func TestOfflineLoop(t *testing.T) {
	e := newAgentEnv(t, func(cfg *Config) {
		cfg.OfflineAfter = time.Minute
		cfg.OfflineCheckInterval = 5 * time.Millisecond
	})
	jt := e.createToken(3600, "")
	cred := e.mustJoin(jt.Token, "edge-1", nil)
	if r := e.postJSON("/clusters/edge-1/report", cred, v1alpha1.AgentReport{Kind: v1alpha1.KindAgentReport}); r.code != http.StatusOK {
		t.Fatalf("report = %d %s", r.code, r.body)
	}
	// The offline check's ticker runs on the hub's clock: advancing it past
	// the silence limit fires the check.
	if err := e.clock.WaitPending(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for e.cluster("edge-1").Status.Link.State != v1alpha1.LinkDisconnected {
		if time.Now().After(deadline) {
			t.Fatal("the hub never marked the silent cluster Disconnected")
		}
		select {
		case <-e.db.Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestRejoinRotatesCredential(t *testing.T) {
	e := newAgentEnv(t, nil)
	jt := e.createToken(3600, "")
	old := e.mustJoin(jt.Token, "edge-1", map[string]string{"region": "north"})
	fresh := e.mustJoin(jt.Token, "edge-1", map[string]string{"tier": "gpu"})
	if old == fresh {
		t.Fatal("re-join returned the same credential")
	}
	ds := "/clusters/edge-1/desiredstate?timeoutSeconds=0"
	if r := e.do(http.MethodGet, ds, old, "", nil); r.code != http.StatusUnauthorized {
		t.Errorf("old credential after re-join = %d %s", r.code, r.body)
	}
	if got := e.registry(http.MethodGet, "/v2/", old); got != http.StatusUnauthorized {
		t.Errorf("old credential on the registry = %d", got)
	}
	if r := e.do(http.MethodGet, ds, fresh, "", nil); r.code != http.StatusOK {
		t.Errorf("new credential = %d %s", r.code, r.body)
	}
	if c := e.cluster("edge-1"); c.Labels["region"] != "north" || c.Labels["tier"] != "gpu" {
		t.Errorf("labels after re-join = %v", c.Labels)
	}
	// Deleting the cluster revokes its credential.
	if r := e.do(http.MethodDelete, "/clusters/edge-1", e.admin, "", nil); r.code != http.StatusOK {
		t.Fatalf("delete = %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodGet, ds, fresh, "", nil); r.code != http.StatusUnauthorized {
		t.Errorf("credential of a deleted cluster = %d %s", r.code, r.body)
	}
}

// TestRevokedCredentialStopsAtOnce checks that a credential in use, and so
// remembered by the store, stops working on the API and the registry as
// soon as it is rotated or its cluster deleted.
func TestRevokedCredentialStopsAtOnce(t *testing.T) {
	tests := []struct {
		name   string
		revoke func(e *agentEnv, token string)
	}{
		{"rotated by joining again", func(e *agentEnv, token string) { e.mustJoin(token, "edge-1", nil) }},
		{"cluster deleted", func(e *agentEnv, _ string) {
			if r := e.do(http.MethodDelete, "/clusters/edge-1", e.admin, "", nil); r.code != http.StatusOK {
				e.t.Fatalf("delete = %d %s", r.code, r.body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newAgentEnv(t, nil)
			jt := e.createToken(3600, "")
			cred := e.mustJoin(jt.Token, "edge-1", nil)
			other := e.mustJoin(jt.Token, "edge-2", nil)
			ds := "/clusters/edge-1/desiredstate?timeoutSeconds=0"
			for range 2 {
				if r := e.do(http.MethodGet, ds, cred, "", nil); r.code != http.StatusOK {
					t.Fatalf("credential in use = %d %s", r.code, r.body)
				}
				if got := e.registry(http.MethodGet, "/v2/", cred); got != http.StatusOK {
					t.Fatalf("credential in use on the registry = %d", got)
				}
			}
			tt.revoke(e, jt.Token)
			if r := e.do(http.MethodGet, ds, cred, "", nil); r.code != http.StatusUnauthorized {
				t.Errorf("revoked credential = %d %s, want 401", r.code, r.body)
			}
			if got := e.registry(http.MethodGet, "/v2/", cred); got != http.StatusUnauthorized {
				t.Errorf("revoked credential on the registry = %d, want 401", got)
			}
			if r := e.do(http.MethodGet, "/clusters/edge-2/desiredstate?timeoutSeconds=0", other, "", nil); r.code != http.StatusOK {
				t.Errorf("another cluster's credential = %d %s", r.code, r.body)
			}
		})
	}
}

// TestReportsAfterDeploymentChanged checks that reports stored after a
// deployment changed elsewhere (here: moved to another version) start from
// its new state, not from the one the previous reports wrote.
func TestReportsAfterDeploymentChanged(t *testing.T) {
	e := newAgentEnv(t, nil)
	e.applyAsAdmin("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.2.0", "[{matchLabels: {region: north}}]"))
	cred := e.mustJoin(e.createToken(3600, "").Token, "edge-1", map[string]string{"region": "north"})
	report := func(bytes int64) {
		t.Helper()
		rep := v1alpha1.AgentReport{
			APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindAgentReport, Cluster: "edge-1",
			Status: v1alpha1.ClusterStatus{AgentVersion: "test"},
			Models: []v1alpha1.ModelReport{{Deployment: "resnet", Model: "resnet", DesiredVersion: "1.2.0", ActiveVersion: "1.2.0",
				Phase: v1alpha1.PhaseActive, BytesFetched: bytes, BytesTotal: bytes}},
		}
		if r := e.postJSON("/clusters/edge-1/report", cred, rep); r.code != http.StatusOK {
			t.Fatalf("report = %d %s", r.code, r.body)
		}
	}
	report(100)
	report(200)
	if row := e.deployment("resnet").Status.Clusters[0]; row.Phase != v1alpha1.PhaseActive || row.BytesFetched != 200 {
		t.Fatalf("row after two reports = %+v", row)
	}
	e.applyAsAdmin("modeldeployments", "resnet", mdYAML("resnet", "resnet", "2.0.0", "[{matchLabels: {region: north}}]"))
	report(300) // still on 1.2.0: only the active version and last contact count
	row := e.deployment("resnet").Status.Clusters[0]
	if row.DesiredVersion != "2.0.0" || row.Phase != v1alpha1.PhasePending || row.ActiveVersion != "1.2.0" || row.BytesFetched == 300 {
		t.Errorf("row after the deployment moved to 2.0.0 and a report on 1.2.0 = %+v", row)
	}
}

// FuzzReport feeds arbitrary bodies to the report endpoint: it must answer, never fail
// inside, and never accept an invalid report.
func FuzzReport(f *testing.F) {
	f.Add([]byte(`{"kind":"AgentReport","cluster":"edge-1","models":[{"deployment":"resnet","phase":"Active"}]}`))
	f.Add([]byte(`{"status":{"link":{"bandwidthBps":-1}}}`))
	f.Add([]byte(`{"models":[{"deployment":"","phase":"x","bytesTotal":-4}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var rep v1alpha1.AgentReport
		if decodeBody(body, &rep, false) != nil {
			return
		}
		if rep.Validate() != nil {
			return
		}
		for _, m := range rep.Models {
			if m.Deployment == "" || m.BytesFetched < 0 || m.BytesTotal < 0 {
				t.Fatalf("accepted invalid row %+v", m)
			}
		}
		if rep.AppliedRevision < 0 || rep.Status.Link.BandwidthBps < 0 {
			t.Fatalf("accepted invalid report %+v", rep)
		}
	})
}

// TestReportHeartbeat: a report that says nothing new rewrites nothing
// until the stored lastSeen is a heartbeat old; one that changes anything
// is written at once.
func TestReportHeartbeat(t *testing.T) {
	e := newAgentEnv(t, nil)
	e.applyAsAdmin("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.2.0", "[{matchLabels: {region: north}}]"))
	cred := e.mustJoin(e.createToken(3600, "").Token, "edge-1", map[string]string{"region": "north"})
	rep := v1alpha1.AgentReport{
		APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindAgentReport, Cluster: "edge-1",
		AppliedRevision: e.desiredRevision("edge-1"), Status: v1alpha1.ClusterStatus{AgentVersion: "test"},
		Models: []v1alpha1.ModelReport{{Deployment: "resnet", Model: "resnet", DesiredVersion: "1.2.0", ActiveVersion: "1.2.0", Phase: v1alpha1.PhaseActive}},
	}
	post := func() {
		t.Helper()
		if r := e.postJSON("/clusters/edge-1/report", cred, rep); r.code != http.StatusOK {
			t.Fatalf("report = %d %s", r.code, r.body)
		}
	}
	post()
	rev := e.revision()
	first := e.cluster("edge-1").Status.Link.LastSeen.Time

	e.clock.Advance(5 * time.Second)
	post()
	if got := e.revision(); got != rev {
		t.Fatalf("an unchanged report 5s later moved the revision from %d to %d", rev, got)
	}
	if got := e.cluster("edge-1").Status.Link.LastSeen.Time; !got.Equal(first) {
		t.Fatalf("lastSeen rewritten by a heartbeat: %v", got)
	}

	rep.Models[0].Phase, rep.Models[0].Error = v1alpha1.PhaseFailed, "disk full"
	post()
	if row := e.deployment("resnet").Status.Clusters[0]; row.Error != "disk full" {
		t.Fatalf("a changed report was not written: %+v", row)
	}
	rev = e.revision()

	e.clock.Advance(16 * time.Second) // past the heartbeat (15 s with the default offline threshold)
	post()
	if got := e.cluster("edge-1").Status.Link.LastSeen.Time; !got.Equal(e.clock.Now().Truncate(time.Second)) || e.revision() == rev {
		t.Fatalf("a report a heartbeat later did not refresh lastSeen: %v at %v", got, e.clock.Now())
	}
}

// TestReportsGroupCommit: reports that arrive together are stored in one
// transaction that rewrites each deployment they name once, and a report
// about an unknown cluster fails alone.
func TestReportsGroupCommit(t *testing.T) {
	e := newAgentEnv(t, nil)
	e.applyAsAdmin("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.2.0", "[{matchLabels: {tier: edge}}]"))
	jt := e.createToken(3600, "")
	const n = 12
	var batch []*pendingReport
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("edge-%d", i)
		e.mustJoin(jt.Token, name, map[string]string{"tier": "edge"})
		batch = append(batch, &pendingReport{rep: &v1alpha1.AgentReport{
			APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindAgentReport, Cluster: name,
			Status: v1alpha1.ClusterStatus{AgentVersion: "test"},
			Models: []v1alpha1.ModelReport{{Deployment: "resnet", Model: "resnet", DesiredVersion: "1.2.0", ActiveVersion: "1.2.0", Phase: v1alpha1.PhaseActive}},
		}})
	}
	batch = append(batch, &pendingReport{rep: &v1alpha1.AgentReport{
		APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindAgentReport, Cluster: "ghost",
	}})
	before := e.revision()
	e.srv.storeBatch(context.Background(), batch)
	for _, p := range batch[:n] {
		if p.err != nil {
			t.Fatalf("report of %s: %v", p.rep.Cluster, p.err)
		}
	}
	if err := batch[n].err; !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("report of an unknown cluster: %v, want not found", err)
	}
	// One write per cluster status and one for the deployment.
	if got, want := e.revision()-before, int64(n+1); got != want {
		t.Errorf("a batch of %d reports took %d revisions, want %d", n, got, want)
	}
	for _, row := range e.deployment("resnet").Status.Clusters {
		if row.Phase != v1alpha1.PhaseActive || row.ActiveVersion != "1.2.0" {
			t.Errorf("row %+v not updated", row)
		}
	}
}

// TestJoinReconcilesOnlyTheJoiningCluster checks that a join, which places only the joining
// cluster, leaves the hub exactly where placing every cluster again would: a full reconcile
// afterwards changes nothing.
func TestJoinReconcilesOnlyTheJoiningCluster(t *testing.T) {
	e := newAgentEnv(t, nil)
	e.applyAsAdmin("modeldeployments", "north", mdYAML("north", "resnet", "1.2.0", "[{matchLabels: {region: north}}]"))
	e.applyAsAdmin("modeldeployments", "gpus", mdYAML("gpus", "resnet", "^1.0", "[{matchLabels: {tier: gpu}}, {matchLabels: {region: east}}]"))
	e.applyAsAdmin("clusters", "declared", clusterYAML("declared", "region: east"))
	jt := e.createToken(3600, "")
	steps := []struct {
		cluster string
		labels  map[string]string
		north   []string // the clusters "north" selects afterwards
		gpus    []string // and "gpus"
	}{
		{"edge-1", map[string]string{"region": "north"}, []string{"edge-1"}, []string{"declared"}},
		{"edge-2", map[string]string{"region": "north", "tier": "gpu"}, []string{"edge-1", "edge-2"}, []string{"declared", "edge-2"}},
		{"edge-3", map[string]string{"region": "south"}, []string{"edge-1", "edge-2"}, []string{"declared", "edge-2"}},
		{"declared", map[string]string{"region": "north"}, []string{"declared", "edge-1", "edge-2"}, []string{"edge-2"}},
		{"edge-1", map[string]string{"region": "west"}, []string{"declared", "edge-2"}, []string{"edge-2"}},
		{"edge-1", map[string]string{"region": "west"}, []string{"declared", "edge-2"}, []string{"edge-2"}}, // a rejoin that changes nothing
	}
	rows := func(name string) []string {
		var names []string
		for _, r := range e.deployment(name).Status.Clusters {
			names = append(names, r.Cluster)
		}
		return names
	}
	for i, st := range steps {
		e.mustJoin(jt.Token, st.cluster, st.labels)
		if got := rows("north"); !slices.Equal(got, st.north) {
			t.Errorf("step %d: north rows %v, want %v", i, got, st.north)
		}
		if got := rows("gpus"); !slices.Equal(got, st.gpus) {
			t.Errorf("step %d: gpus rows %v, want %v", i, got, st.gpus)
		}
		for _, d := range []string{"north", "gpus"} {
			c := meta.FindStatusCondition(e.deployment(d).Status.Conditions, v1alpha1.ConditionPlaced)
			if want := fmt.Sprintf("selected %d cluster(s)", len(rows(d))); c == nil || c.Message != want {
				t.Errorf("step %d: %s Placed condition %+v, want %q", i, d, c, want)
			}
		}
		// A full reconcile finds nothing left to do.
		after := e.revision()
		if err := e.db.Update(t.Context(), func(tx *store.Tx) error { return e.srv.reconcile(t.Context(), tx) }); err != nil {
			t.Fatal(err)
		}
		if rev := e.revision(); rev != after {
			t.Errorf("step %d: a full reconcile after the join moved the revision from %d to %d", i, after, rev)
		}
	}
	for cluster, want := range map[string]int{"edge-1": 0, "edge-2": 2, "edge-3": 0, "declared": 1} {
		_, doc, err := e.db.DesiredState(t.Context(), cluster)
		if err != nil {
			t.Fatal(err)
		}
		if ds := decodeJSON[v1alpha1.DesiredState](t, doc); len(ds.Models) != want {
			t.Errorf("%s desired %+v, want %d models", cluster, ds.Models, want)
		}
	}
}
