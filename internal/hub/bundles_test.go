package hub

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/bundle"
)

// TestImportStatus: a status bundle is verified with the key its cluster
// recorded at join and applied once; a replay, another cluster's key or a
// cluster with no key are refused and change nothing; records also sent
// online count once.
func TestImportStatus(t *testing.T) {
	ta := &tally{calls: map[string]int{}, sum: map[string]int{}}
	_, hubKey, _ := ed25519.GenerateKey(rand.Reader)
	e := newAgentEnv(t, func(cfg *Config) {
		cfg.Records = map[string]RecordHandler{"tally": ta.handle}
		cfg.BundleKey = hubKey
	})
	tok := e.createToken(3600, "").Token
	pub1, key1, _ := ed25519.GenerateKey(rand.Reader)
	pub2, key2, _ := ed25519.GenerateKey(rand.Reader)
	join := func(name string, pub ed25519.PublicKey) string {
		r := e.postJSON("/join", "", v1alpha1.JoinRequest{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindJoinRequest,
			Token: tok, Cluster: name, BundleKey: pub})
		if r.code != http.StatusOK {
			t.Fatalf("join %s = %d %s", name, r.code, r.body)
		}
		jr := decodeJSON[v1alpha1.JoinResponse](t, r.body)
		if !ed25519.PublicKey(jr.BundleKey).Equal(hubKey.Public()) {
			t.Fatalf("join answer carries bundle key %x, not the hub's", jr.BundleKey)
		}
		return jr.Credential
	}
	cred1 := join("edge-1", pub1)
	join("edge-2", pub2)
	e.mustJoin(tok, "edge-3", nil) // an agent from before bundles: no key

	status := func(cluster string, seq int64, key ed25519.PrivateKey, recs ...v1alpha1.OutboxRecord) []byte {
		p, _ := json.Marshal(bundle.Status{Cluster: cluster, Seq: seq, Created: time.Now(), Records: recs})
		env, err := bundle.Sign(bundle.PayloadStatus, p, key)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	post := func(env []byte, token string) response {
		return e.do(http.MethodPost, "/bundles/status", token, "application/json", env)
	}
	s1 := status("edge-1", 1, key1, tallyRecord("a", `{"n":1}`), tallyRecord("b", `{"n":2}`))
	tests := []struct {
		name  string
		env   []byte
		token string
		code  int
		want  string
	}{
		{"first import", s1, e.admin, http.StatusOK, `"seq":1`},
		{"replay", s1, e.admin, http.StatusConflict, "already imported"},
		{"signed by another cluster", status("edge-1", 2, key2, tallyRecord("c", `{"n":100}`)), e.admin, http.StatusBadRequest, "signature does not verify"},
		{"cluster without a key", status("edge-3", 1, key1, tallyRecord("d", `{"n":100}`)), e.admin, http.StatusBadRequest, "recorded no key"},
		{"not admin", status("edge-1", 3, key1), cred1, http.StatusForbidden, ""},
		{"garbage", []byte("{"), e.admin, http.StatusBadRequest, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(tt.env, tt.token)
			if r.code != tt.code || !strings.Contains(string(r.body), tt.want) {
				t.Fatalf("import = %d %s, want %d with %q", r.code, r.body, tt.code, tt.want)
			}
		})
	}
	if calls, sum := ta.get("edge-1"); calls != 2 || sum != 3 {
		t.Fatalf("edge-1 tally: %d calls, sum %d; want 2, 3", calls, sum)
	}
	// Record b again online, with a new one: b counts once.
	r := e.postJSON("/clusters/edge-1/outbox", cred1, batch(tallyRecord("b", `{"n":2}`), tallyRecord("e", `{"n":10}`)))
	if got := strings.Join(outcomes(t, r), ","); got != "b:Duplicate,e:Applied" {
		t.Fatalf("online after the bundle: %s", got)
	}
	// And a later status bundle carrying e again: e counts once.
	if r := post(status("edge-1", 4, key1, tallyRecord("e", `{"n":10}`)), e.admin); r.code != http.StatusOK {
		t.Fatalf("status 4 = %d %s", r.code, r.body)
	}
	if calls, sum := ta.get("edge-1"); calls != 3 || sum != 13 {
		t.Fatalf("edge-1 tally: %d calls, sum %d; want 3, 13", calls, sum)
	}
	if calls, _ := ta.get("edge-3"); calls != 0 {
		t.Fatalf("edge-3 got %d records from a refused bundle", calls)
	}
}
