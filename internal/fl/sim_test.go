package fl

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/internal/dataset"
)

var (
	subsetOnce        sync.Once
	subTrain, subTest *dataset.Set
	subErr            error
)

func subset(t testing.TB) (*dataset.Set, *dataset.Set) {
	subsetOnce.Do(func() { subTrain, subTest, subErr = dataset.FashionSubset() })
	if subErr != nil {
		t.Fatal(subErr)
	}
	return subTrain, subTest
}

// detRand is a deterministic randomness source for tests.
type detRand struct{ r *rand.ChaCha8 }

func newDetRand(seed byte) *detRand {
	var s [32]byte
	s[0] = seed
	return &detRand{rand.NewChaCha8(s)}
}

func (d *detRand) Read(p []byte) (int, error) { return d.r.Read(p) }

// simClients splits the first n*per training images into n equal shards.
func simClients(t testing.TB, n, per int, facts ClusterFacts) []SimClient {
	tr, _ := subset(t)
	var out []SimClient
	for i := range n {
		f := facts
		f.Samples = per
		f.Online = true
		out = append(out, SimClient{Name: clusterName(i), Train: tr.Slice(i*per, (i+1)*per), Facts: f})
	}
	return out
}

func clusterName(i int) string { return "store-" + string(rune('a'+i/26)) + string(rune('a'+i%26)) }

func baseSpec() JobSpec {
	return JobSpec{Job: "fmnist", Model: ModelSpec{Arch: "mlp", Sizes: []int{784, 32, 10}}, Rounds: 3, MinClients: 3,
		LocalEpochs: 1, BatchSize: 32, LR: 0.05, RoundDeadline: time.Minute, Seed: 1}
}

func TestSimulateFedAvgLearns(t *testing.T) {
	_, te := subset(t)
	res, err := Simulate(context.Background(), SimConfig{Spec: baseSpec(), Clients: simClients(t, 4, 300, ClusterFacts{SamplesPerSec: 1000, BandwidthBps: 10e6}),
		Test: te, Rand: newDetRand(1)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status.State != Done || res.Model.Ref.Round != 3 {
		t.Fatalf("status %+v", res.Status)
	}
	for _, p := range res.Points {
		t.Logf("round %d at %v: accuracy %.3f, %d bytes", p.Round, p.Time, p.Accuracy, p.UploadBytes)
	}
	if acc := res.Points[len(res.Points)-1].Accuracy; acc < 0.6 {
		t.Fatalf("accuracy %.3f after 3 rounds", acc)
	}
}
