package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/train"
)

// The demo's federated learning scene: the three ships (not the submarine, which has no link)
// train a fresh model together on their
// own shards of Fashion-MNIST, each with a different mix of classes, sending only updates;
// one ship's link drops during a round, which closes without it; the job's last model is
// deployed to every ship.

// demoFLJob is the scene's job: a few rounds of a small MLP.
const demoFLJob = `apiVersion: ml.outpost.dev/v1alpha1
kind: FederatedJob
metadata: {name: fashion-fl}
spec:
  model: {name: fashion-fl-init, version: 1.0.0, output: fashion-fl}
  clusterSelectors: [{matchLabels: {tier: edge}, matchExpressions: [{key: link, operator: DoesNotExist}]}]
  data: {path: fl-shard}
  rounds: 4
  clients: {min: 2, roundTimeout: 8s}
  training: {epochs: 2, batchSize: 32, learningRate: "0.05"}
  strategy: {type: FedProx, mu: "0.05"}
  encoding: Adaptive
`

const demoFLDeployment = `apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: fashion-fl}
spec:
  model: {name: fashion-fl, version: ">=0.1.0"}
  clusterSelectors: [{matchLabels: {tier: edge}, matchExpressions: [{key: link, operator: DoesNotExist}]}]
`

// flScene runs the federated learning scene on edges.
func (d *demo) flScene(edges []*edge) error {
	d.step("Federated learning: the ships train one model on their own images, which never leave them")
	init := filepath.Join(d.dir, "fl-init")
	if err := os.MkdirAll(init, 0o755); err != nil {
		return err
	}
	b, err := train.NewMLP([]int{784, 32, 10}, 11).MarshalONNX("fashion-fl")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(init, "model.onnx"), b, 0o644); err != nil {
		return err
	}
	d.show("model", "push", init, "--name", "fashion-fl-init", "--version", "1.0.0")
	for i, e := range edges {
		d.show("fl", "example-data", filepath.Join(d.pipelineData(e), "fl-shard"), "--shard", fmt.Sprintf("%d/%d", i+1, len(edges)), "--alpha", "0.5")
	}
	spec := filepath.Join(d.dir, "fl-job.yaml")
	if err := os.WriteFile(spec, []byte(demoFLJob), 0o644); err != nil {
		return err
	}
	d.show("apply", "-f", spec)
	get := func() (v1alpha1.FederatedJob, error) {
		var j v1alpha1.FederatedJob
		out, err := d.run("get", "federatedjob", "fashion-fl", "-o", "json")
		if err == nil {
			err = json.Unmarshal([]byte(out), &j)
		}
		return j, err
	}
	// Once round 1 is done, the last ship's link drops for a round.
	cut := edges[len(edges)-1]
	deadline := time.Now().Add(3 * time.Minute)
	var j v1alpha1.FederatedJob
	dropped, healed := false, false
	for {
		if j, err = get(); err != nil {
			return err
		}
		if j.Status.Phase.Finished() || time.Now().After(deadline) {
			break
		}
		if !dropped && j.Status.Round >= 1 {
			cut.link.Partition(true)
			dropped = true
			d.note("%s's link drops during round %d", cut.name, j.Status.Round+1)
		}
		if dropped && !healed && j.Status.Round >= 2 {
			cut.link.Partition(false)
			healed = true
			d.note("%s's link is back", cut.name)
		}
		select {
		case <-d.ctx.Done():
			return d.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if dropped && !healed {
		cut.link.Partition(false)
	}
	d.show("fl", "status", "fashion-fl")
	d.check(j.Status.Phase == v1alpha1.FederatedSucceeded, "the federated job ran its %d rounds: %s", j.Spec.RoundsValue(), j.Status.Message)
	dropouts := int32(0)
	for _, r := range j.Status.Rounds {
		dropouts += r.Dropouts
	}
	d.check(dropouts > 0 || anyRoundWithout(j, len(edges)), "a round closed without %s, whose link was down", cut.name)
	if len(j.Status.Rounds) > 0 {
		first, last := j.Status.Rounds[0].Accuracy, j.Status.Accuracy
		d.note("accuracy on the ships' validation splits: %s before round 1, %s before the last round", first, last)
	}
	d.show("model", "lineage", "fashion-fl@"+j.Status.LatestVersion)
	dep := filepath.Join(d.dir, "fl-deployment.yaml")
	if err := os.WriteFile(dep, []byte(demoFLDeployment), 0o644); err != nil {
		return err
	}
	_, err = d.run("apply", "-f", dep, "--wait", "--timeout", "2m")
	d.check(err == nil, "the job's model %s is deployed to every ship%s", j.Status.LatestVersion, errNote(err))
	d.show("get", "federatedjobs")
	return nil
}

// anyRoundWithout reports whether a round of j had fewer than n participants.
func anyRoundWithout(j v1alpha1.FederatedJob, n int) bool {
	for _, r := range j.Status.Rounds {
		if int(r.Participants) < n {
			return true
		}
	}
	return false
}
