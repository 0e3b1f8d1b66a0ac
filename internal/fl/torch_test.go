package fl

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/testenv"
)

// FedAvg here and in PyTorch, from the same initial weights on the same
// Dirichlet (α 0.5) partition of 6000 Fashion-MNIST training images among
// 10 clients, with the same local epochs, batch and learning rate, reach
// the same test accuracy on the full 10,000 test images within 1.5
// points.
func TestFedAvgMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("trains 10 clients for 10 rounds twice (about 15 s); skipped with -short")
	}
	if raceEnabled {
		t.Skip("minutes under the race detector; make test runs it in its pass without -race")
	}
	const py = "/usr/bin/python3"
	if exec.Command(py, "-c", "import torch, numpy").Run() != nil {
		testenv.MissingPeer(t, py+" cannot import torch (Debian python3-torch; scripts/debian-deps.sh installs it with python3-torchvision)")
	}
	dir := dataset.DebianFashionDir
	if _, err := os.Stat(filepath.Join(dir, "t10k-images-idx3-ubyte.gz")); err != nil {
		testenv.MissingPeer(t, dir+" absent (Debian package dataset-fashion-mnist, scripts/debian-deps.sh)")
	}
	full, err := dataset.ReadFashionDir(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	test, err := dataset.ReadFashionDir(dir, "t10k")
	if err != nil {
		t.Fatal(err)
	}
	const (
		clients, rounds, epochs, batch = 10, 10, 1, 32
		lr                             = 0.02
		n                              = 6000
	)
	sizes := []int{784, 64, 10}
	tr := full.Slice(0, n)
	labels := make([]int, n)
	for i, y := range tr.Labels[:n] {
		labels[i] = int(y)
	}
	parts, err := DirichletPartition(labels, clients, 0.5, rand.New(rand.NewPCG(5, 0)))
	if err != nil {
		t.Fatal(err)
	}
	spec := JobSpec{Job: "torch-ref", Model: ModelSpec{Arch: "mlp", Sizes: sizes}, Rounds: rounds, MinClients: clients,
		LocalEpochs: epochs, BatchSize: batch, LR: lr, RoundDeadline: time.Hour, Seed: 11}
	init, err := InitialWeights(spec.Model, spec.Seed)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	var raw []byte
	for _, v := range Flatten(init) {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	if err := os.WriteFile(filepath.Join(tmp, "init.f32"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"dataDir": dir, "partition": parts, "weights": filepath.Join(tmp, "init.f32"),
		"sizes": sizes, "rounds": rounds, "epochs": epochs, "batch": batch, "lr": lr, "seed": 1})
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}

	var sims []SimClient
	for k, p := range parts {
		if len(p) == 0 {
			t.Fatalf("client %d got no samples", k)
		}
		sims = append(sims, SimClient{Name: clusterName(k), Train: Indexed{Data: tr, Indices: p},
			Facts: ClusterFacts{Online: true, Samples: len(p), SamplesPerSec: 1000, BandwidthBps: 1e7}})
	}
	start := time.Now()
	res, err := Simulate(context.Background(), SimConfig{Spec: spec, Initial: init, Clients: sims, Test: test})
	if err != nil {
		t.Fatal(err)
	}
	goTime := time.Since(start)
	start = time.Now()
	out, err := exec.Command(py, "testdata/fedavg_ref.py", filepath.Join(tmp, "config.json")).Output()
	if err != nil {
		t.Fatalf("reference: %v", err)
	}
	var ref struct {
		Torch    string
		Accuracy []float64
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatalf("reference output %q: %v", out, err)
	}
	if len(res.Points) != rounds+1 || len(ref.Accuracy) != rounds {
		t.Fatalf("%d Go points, %d reference rounds", len(res.Points), len(ref.Accuracy))
	}
	for r := range rounds {
		t.Logf("round %d: Go %.2f%%, PyTorch %s %.2f%%", r+1, 100*res.Points[r+1].Accuracy, ref.Torch, 100*ref.Accuracy[r])
	}
	t.Logf("Go %v, PyTorch %v", goTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	goAcc, refAcc := res.Points[rounds].Accuracy, ref.Accuracy[rounds-1]
	if math.Abs(goAcc-refAcc) > 0.015 {
		t.Fatalf("final test accuracy: Go %.2f%%, PyTorch %.2f%%: more than 1.5 points apart", 100*goAcc, 100*refAcc)
	}
}
