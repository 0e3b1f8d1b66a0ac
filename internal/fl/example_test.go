package fl_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/fl"
)

// The hub's adapter and two agents in miniature: facts in, assignments
// out, reports back, until the job is done.
func ExampleCoordinator() {
	train, _, err := dataset.FashionSubset()
	if err != nil {
		panic(err)
	}
	spec := fl.JobSpec{Job: "shirts", Model: fl.ModelSpec{Arch: "mlp", Sizes: []int{784, 16, 10}}, Rounds: 2, MinClients: 2,
		LocalEpochs: 1, BatchSize: 32, LR: 0.05, RoundDeadline: time.Minute, SecAgg: &fl.SecAggSpec{}}
	init, _ := fl.InitialWeights(spec.Model, 1)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	coord, out, err := fl.New(spec, init, now)
	if err != nil {
		panic(err)
	}
	models := map[int]fl.GlobalModel{}
	clients := map[string]*fl.Client{"store-1": fl.NewClient("store-1", rand.Reader), "store-2": fl.NewClient("store-2", rand.Reader)}
	local := map[string]*dataset.Set{"store-1": train.Slice(0, 200), "store-2": train.Slice(200, 400)}
	// deliver plays the adapter: store the published model, hand each
	// assignment to its cluster, feed the reports back.
	var deliver func(fl.Output)
	deliver = func(o fl.Output) {
		if g := o.Published; g != nil {
			models[g.Ref.Round] = *g
			fmt.Printf("model %d from %d updates\n", g.Ref.Round, g.Participants)
		}
		for _, a := range o.Assignments {
			reports, err := clients[a.Cluster].Handle(context.Background(), a, models[a.Model.Round], local[a.Cluster], nil)
			if err != nil {
				panic(err)
			}
			for _, r := range reports {
				next, err := coord.Handle(now, r)
				if err != nil {
					panic(err)
				}
				deliver(next)
			}
		}
	}
	deliver(out)
	for _, name := range []string{"store-1", "store-2"} {
		o, err := coord.Handle(now, fl.Report{Job: "shirts", Cluster: name, Kind: fl.KindFacts,
			Facts: &fl.ClusterFacts{Online: true, Samples: 200, SamplesPerSec: 1000, BandwidthBps: 10e6}})
		if err != nil {
			panic(err)
		}
		deliver(o)
	}
	fmt.Println(coord.Status().State)
	// Output:
	// model 0 from 0 updates
	// model 1 from 2 updates
	// model 2 from 2 updates
	// done
}
