package agent

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/hub/hubtest"
	"outpost.dev/outpost/internal/linksim"
	"outpost.dev/outpost/internal/pipeline"
	"outpost.dev/outpost/internal/secagg"
	"outpost.dev/outpost/internal/train"
)

// wire records every byte of the connections its dialer makes, each direction apart.
type wire struct {
	mu    sync.Mutex
	conns []*wireConn
}

type wireConn struct {
	net.Conn
	mu      sync.Mutex
	out, in bytes.Buffer // written (agent to hub), read (hub to agent)
}

func (c *wireConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// client returns an HTTP client whose every connection goes through link and is recorded.
func (w *wire) client(link *linksim.Link) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", link.Addr())
		if err != nil {
			return nil, err
		}
		wc := &wireConn{Conn: c}
		w.mu.Lock()
		w.conns = append(w.conns, wc)
		w.mu.Unlock()
		return wc, nil
	}}
	return &http.Client{Transport: tr}
}

// exchange is one request and its response as they crossed a link, bodies decoded.
type exchange struct {
	req      *http.Request
	reqBody  []byte
	respBody []byte
}

// decode parses the recorded streams into HTTP exchanges, bodies decompressed, and returns
// them with every recorded byte.
func (w *wire) decode(t *testing.T) ([]exchange, []byte) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var all []byte
	var xs []exchange
	for _, c := range w.conns {
		c.mu.Lock()
		out, in := bytes.Clone(c.out.Bytes()), bytes.Clone(c.in.Bytes())
		c.mu.Unlock()
		all = append(append(all, out...), in...)
		reqs, resps := bufio.NewReader(bytes.NewReader(out)), bufio.NewReader(bytes.NewReader(in))
		for {
			req, err := http.ReadRequest(reqs)
			if err != nil {
				break
			}
			x := exchange{req: req}
			x.reqBody, _ = io.ReadAll(req.Body)
			if req.Header.Get("Content-Encoding") == "zstd" {
				d, err := zstd.NewReader(nil)
				if err != nil {
					t.Fatal(err)
				}
				if x.reqBody, err = d.DecodeAll(x.reqBody, nil); err != nil {
					t.Fatalf("a zstd body on the link: %v", err)
				}
				d.Close()
			}
			if resp, err := http.ReadResponse(resps, req); err == nil {
				x.respBody, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			xs = append(xs, x)
		}
	}
	for _, x := range xs {
		all = append(append(all, x.reqBody...), x.respBody...)
	}
	return xs, all
}

func float32Bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

// dumpTables returns every row of every table of db, as text.
func dumpTables(t *testing.T, db *sql.DB) []byte {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	var out bytes.Buffer
	for _, tb := range tables {
		r, err := db.Query(`SELECT * FROM "` + tb + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := r.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for r.Next() {
			if err := r.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					out.Write(b)
				} else {
					fmt.Fprint(&out, v)
				}
				out.WriteByte('\t')
			}
		}
		r.Close()
	}
	return out.Bytes()
}

// A federated job with secure aggregation across three agents, each behind its own link
// (one of which drops mid-job), recorded byte for byte: no training example of any cluster
// crosses a link, what the hub receives and stores holds no cluster's plain update, and the
// sum the hub recovers is the sum of the plain updates.
func TestFederatedPrivacy(t *testing.T) {
	var hubDB *sql.DB
	srv, admin := hubtest.Build(t, func(c *hub.Config) {
		hubDB = c.DB.SQL()
		c.FederatedInterval = 50 * time.Millisecond
	})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	api := func(method, path string, body []byte) []byte {
		t.Helper()
		req, err := http.NewRequest(method, ts.URL+v1alpha1.APIPath+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/yaml")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	// The initial model.
	initial := train.NewMLP([]int{784, 16, 10}, 7)
	onnx, err := initial.MarshalONNX("fmnist")
	if err != nil {
		t.Fatal(err)
	}
	mdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(mdir, "model.onnx"), onnx, 0o644); err != nil {
		t.Fatal(err)
	}
	repo := func(name string) *artifactRepo { return newArtifactRepo(t, ts.URL, "models/"+name, admin) }
	if _, err := artifact.Push(t.Context(), repo("fmnist").r, mdir, artifact.PushOptions{Name: "fmnist", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	tok, err := srv.CreateJoinToken(t.Context(), time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	all, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	w := &wire{}
	names := []string{"edge-1", "edge-2", "edge-3"}
	links := map[string]*linksim.Link{}
	shards := map[string]string{}
	for i, name := range names {
		link, err := linksim.Listen(strings.TrimPrefix(ts.URL, "http://"), linksim.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { link.Close() })
		links[name] = link
		dir := t.TempDir()
		shards[name] = filepath.Join(dir, "data", "fmnist")
		if err := dataset.WriteDir(shards[name], "train", all.Slice(i*200, (i+1)*200)); err != nil {
			t.Fatal(err)
		}
		cfg := Config{Dir: dir, Hub: "http://hub.test", HTTPClient: w.client(link), Name: name,
			Labels: map[string]string{"fl": "on"}, JoinToken: tok.Token, PollTimeout: 2 * time.Second,
			ReportInterval: 200 * time.Millisecond, RetryBase: 20 * time.Millisecond, RetryMax: 300 * time.Millisecond, AgentVersion: "test"}
		_, stop, _ := startAgent(t, cfg)
		t.Cleanup(stop)
	}
	api(http.MethodPut, "/federatedjobs/secure", []byte(`apiVersion: ml.outpost.dev/v1alpha1
kind: FederatedJob
metadata: {name: secure}
spec:
  model: {name: fmnist, version: 1.0.0}
  clusterSelectors: [{matchLabels: {fl: "on"}}]
  data: {path: fmnist}
  rounds: 2
  clients: {min: 2, roundTimeout: 8s}
  training: {epochs: 1, batchSize: 32, learningRate: "0.05"}
  secureAggregation: true
`))
	job := func() v1alpha1.FederatedJob {
		var j v1alpha1.FederatedJob
		if err := json.Unmarshal(api(http.MethodGet, "/federatedjobs/secure", nil), &j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	deadline := time.Now().Add(90 * time.Second)
	dropped := false
	var j v1alpha1.FederatedJob
	for j = job(); !j.Status.Phase.Finished(); j = job() {
		if !dropped && j.Status.Round >= 1 {
			links["edge-3"].Partition(true) // edge-3's link drops for the rest of the job
			dropped = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s at round %d: %s", j.Status.Phase, j.Status.Round, j.Status.Message)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if j.Status.Phase != v1alpha1.FederatedSucceeded || len(j.Status.Rounds) != 2 {
		t.Fatalf("job %s after %d rounds: %s", j.Status.Phase, len(j.Status.Rounds), j.Status.Message)
	}
	// A round starts once two clusters are online: round 1 has two or three.
	for _, r := range j.Status.Rounds {
		if r.Participants < 2 {
			t.Errorf("round %d: %+v, want at least 2 participants", r.Round, r)
		}
	}
	xs, onWire := w.decode(t)

	// What crossed the links, decoded: the federated messages are there in the clear (the
	// recording sees plaintext), the training examples are not.
	masked := map[string]fl.Masked{}
	var outboxBodies [][]byte
	for _, x := range xs {
		if !strings.HasSuffix(x.req.URL.Path, "/outbox") {
			continue
		}
		outboxBodies = append(outboxBodies, x.reqBody)
		var b v1alpha1.OutboxBatch
		if err := json.Unmarshal(x.reqBody, &b); err != nil {
			t.Fatalf("an outbox batch on the link: %v", err)
		}
		for _, r := range b.Records {
			if r.Kind != v1alpha1.RecordKindFederated {
				continue
			}
			fr, err := v1alpha1.ParseFederatedRecord(r.Payload)
			if err != nil {
				t.Fatal(err)
			}
			var rep fl.Report
			if err := json.Unmarshal(fr.Message, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Update != nil {
				t.Errorf("%s sent a plain update in a secure job", rep.Cluster)
			}
			if rep.Masked != nil && rep.Round == 1 {
				masked[rep.Cluster] = *rep.Masked
			}
		}
	}
	if int32(len(masked)) != j.Status.Rounds[0].Participants {
		t.Fatalf("masked updates of round 1 seen on the links: %d, want %d (the recording is not reading the links)", len(masked), j.Status.Rounds[0].Participants)
	}
	for name, dir := range shards {
		s, err := dataset.ReadFashionDir(dir, "train")
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, s.Dim())
		for _, i := range []int{0, 1, 57, 123, s.Len() - 1} {
			s.Sample(i, x)
			if bytes.Contains(onWire, s.Image(i)) {
				t.Errorf("training example %d of %s (raw bytes) crossed a link", i, name)
			}
			if bytes.Contains(onWire, float32Bytes(x)) {
				t.Errorf("training example %d of %s (as float32) crossed a link", i, name)
			}
		}
	}

	// Each cluster's plain update of round 1, computed again from its assignment: the
	// training is deterministic given the assignment, the global model and the data.
	stored := dumpTables(t, hubDB)
	var assignments map[string]fl.Assignment
	assignments = maskAssignments(t, xs)
	global0 := [][]float32{}
	for _, l := range initial.Layers {
		global0 = append(global0, l.W, l.B)
	}
	var sum []float64
	var wsum float64
	for _, name := range names {
		if _, ok := masked[name]; !ok {
			continue // not in round 1
		}
		a, ok := assignments[name]
		if !ok {
			t.Fatalf("no mask assignment of round 1 for %s on the links", name)
		}
		trSet, _, err := pipeline.ReadDataset(shards[name], "")
		if err != nil {
			t.Fatal(err)
		}
		local, val := splitData(trSet, 0.2, string(j.UID))
		res, err := fl.LocalTrain(t.Context(), a, global0, local, val)
		if err != nil {
			t.Fatal(err)
		}
		d := res.Delta
		fl.Scale(d, a.Weight)
		plain := fl.Flatten(d)
		enc, err := secagg.NewEncoding(a.SecAgg.Range, a.SecAgg.N, a.SecAgg.Bits)
		if err != nil {
			t.Fatal(err)
		}
		encoded, err := enc.Encode(plain, mrand.New(mrand.NewPCG(1, 2)))
		if err != nil {
			t.Fatal(err)
		}
		same := 0
		for i, y := range masked[name].Y.Words {
			if y == encoded[i] {
				same++
			}
		}
		if same > len(encoded)/100 {
			t.Errorf("%s's masked update equals its plain encoded update in %d of %d values", name, same, len(encoded))
		}
		// A window of eight values that are all non-zero: zeros (the weights of pixels that are
		// always black) would be found in any binary file.
		at := distinctWindow(plain, 8)
		if at < 0 {
			t.Fatalf("%s's update has no eight non-zero values in a row", name)
		}
		head, _ := json.Marshal(encoded[at : at+8])
		headPlain := float32Bytes(plain[at : at+8])
		for what, b := range map[string][]byte{"the links": onWire, "the hub's store": stored} {
			if bytes.Contains(b, bytes.Trim(head, "[]")) || bytes.Contains(b, headPlain) {
				t.Errorf("%s's plain update of round 1 is in %s", name, what)
			}
		}
		if sum == nil {
			sum = make([]float64, len(plain))
		}
		for i, v := range plain {
			sum[i] += float64(v)
		}
		wsum += a.Weight
	}
	// The hub's round-1 model is the initial one plus the sum over the weights.
	g1 := repo("secure").weights(t, "0.1.0")
	got := fl.Flatten(fl.Sub(g1, global0))
	var worst, scale float64
	for i := range got {
		want := sum[i] / wsum
		worst = max(worst, math.Abs(float64(got[i])-want))
		scale = max(scale, math.Abs(want))
	}
	if worst > 1e-3*scale+1e-5 {
		t.Errorf("the round-1 model differs from the plain sum by up to %g (largest value %g)", worst, scale)
	}
	t.Logf("%d exchanges, %d bytes on the links; %d outbox batches; round-1 model within %.2g of the plain sum", len(xs), len(onWire), len(outboxBodies), worst)
}

// distinctWindow returns the index of the first n consecutive non-zero values of v, or -1.
func distinctWindow(v []float32, n int) int {
	run := 0
	for i, x := range v {
		if x == 0 {
			run = 0
			continue
		}
		if run++; run == n {
			return i - n + 1
		}
	}
	return -1
}

// maskAssignments returns, by cluster, the assignment of the mask phase of round 1 found in
// the desired states that crossed the links.
func maskAssignments(t *testing.T, xs []exchange) map[string]fl.Assignment {
	t.Helper()
	out := map[string]fl.Assignment{}
	for _, x := range xs {
		if !strings.HasSuffix(x.req.URL.Path, "/desiredstate") || len(x.respBody) == 0 {
			continue
		}
		var ds v1alpha1.DesiredState
		if err := json.Unmarshal(x.respBody, &ds); err != nil {
			continue // not modified, or a watch answer without a document
		}
		for _, f := range ds.Federated {
			var a fl.Assignment
			if len(f.Message) == 0 || json.Unmarshal(f.Message, &a) != nil {
				continue
			}
			if a.Round == 1 && a.Phase == fl.Mask {
				out[a.Cluster] = a
			}
		}
	}
	return out
}

// artifactRepo is a repository of a hub's registry served at a URL, read with the admin token.
type artifactRepo struct {
	r *remote.Repository
}

func newArtifactRepo(t *testing.T, url, repo, admin string) *artifactRepo {
	t.Helper()
	host := strings.TrimPrefix(url, "http://")
	r, err := remote.NewRepository(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = &orasauth.Client{Client: http.DefaultClient, Cache: orasauth.NewCache(),
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "outpost", Password: admin})}
	return &artifactRepo{r: r}
}

// weights pulls version's model.onnx, an MLP, and returns its tensors.
func (a *artifactRepo) weights(t *testing.T, version string) [][]float32 {
	t.Helper()
	dir := t.TempDir()
	if _, err := artifact.Pull(t.Context(), a.r, version, dir, artifact.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := train.ImportONNX(b)
	if err != nil {
		t.Fatal(err)
	}
	var w [][]float32
	for _, l := range m.Layers {
		w = append(w, l.W, l.B)
	}
	return w
}
