package cli

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/drift"
)

// The demo's pipeline scene: the drift alarm of a cluster cut off from the
// hub starts a pipeline there that fine-tunes the served model on the
// cluster's own labelled images and registers the result only if it does
// better than the served version on the recent requests whose true labels
// came back (feedback), and still well on clean reference images; when the link returns, the run
// and the version reach the hub with their lineage, and the hub promotes
// and signs the version for the whole fleet.

// demoPipeline is the retraining pipeline: every edge cluster holds it, a
// drift alarm on deployment fashion starts it.
const demoPipeline = `apiVersion: ml.outpost.dev/v1alpha1
kind: Pipeline
metadata: {name: retrain}
spec:
  clusterSelectors: [{matchLabels: {tier: edge}}]
  triggers: [{type: Drift, deployment: fashion}]
  steps:
  - {name: data, type: dataset}
  - {name: recent, type: dataset, params: {path: "feedback:fashion", split: "0.5"}}
  - {name: base, type: evaluate, inputs: {data: steps.recent.outputs.test}, params: {deployment: fashion}}
  - name: tune
    type: finetune
    inputs: {data: steps.data.outputs.train}
    params: {deployment: fashion, lastLayers: "2", epochs: "2"}
    resources: {cpu: "1", memory: 512Mi}
  - {name: eval, type: evaluate, inputs: {data: steps.recent.outputs.test, model: steps.tune.outputs.model}}
  - {name: clean, type: dataset, params: {path: "builtin:fashion-mnist", sample: "1000"}}
  - {name: budget, type: evaluate, inputs: {data: steps.clean.outputs.test, model: steps.tune.outputs.model}}
  - name: register
    type: register
    when: steps.eval.outputs.accuracy > steps.base.outputs.accuracy && steps.budget.outputs.accuracy > 0.6
    inputs: {model: steps.tune.outputs.model, reference: steps.data.outputs.test}
    params: {model: fashion}
`

// writeLabels writes labels as an IDX file of unsigned bytes.
func writeLabels(path string, labels []byte) error {
	b := make([]byte, 8, 8+len(labels))
	binary.BigEndian.PutUint32(b[0:], 0x00000801)
	binary.BigEndian.PutUint32(b[4:], uint32(len(labels)))
	return os.WriteFile(path, append(b, labels...), 0o644)
}

// pipelineData is the folder of e's own data, its agent's --pipeline-data.
func (d *demo) pipelineData(e *edge) string { return filepath.Join(d.dir, e.name+"-data") }

// retrainSetup gives cut its own labelled images, taken by its fogged
// camera (the training and test sets, washed out), and applies the pipeline.
func (d *demo) retrainSetup(cut *edge, trainSet, testSet *dataset.Set) error {
	d.step("Apply the retrain pipeline: on a drift alarm, fine-tune the served model on the cluster's own labelled images")
	dir := d.pipelineData(cut)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		prefix string
		set    *dataset.Set
	}{{"train", trainSet}, {"t10k", testSet}} {
		fogged := washedOut(f.set)
		if err := writeIDX(filepath.Join(dir, f.prefix+"-images-idx3-ubyte"), fogged); err != nil {
			return err
		}
		if err := writeLabels(filepath.Join(dir, f.prefix+"-labels-idx1-ubyte"), fogged.Labels); err != nil {
			return err
		}
	}
	d.note("%s's crew labelled %d images its fogged camera took (%s)", cut.name, trainSet.Len()+testSet.Len(), dir)
	spec := filepath.Join(d.dir, "pipeline-retrain.yaml")
	if err := os.WriteFile(spec, []byte(demoPipeline), 0o644); err != nil {
		return err
	}
	d.show("apply", "-f", spec)
	d.show("get", "pipelines")
	return nil
}

// localRuns lists the runs of e's pipeline engine, as 'outpost pipeline
// runs --dir' reads them.
func (d *demo) localRuns(e *edge) []v1alpha1.PipelineRun {
	out, err := d.run("pipeline", "runs", "--dir", e.dir, "-o", "json")
	var list v1alpha1.PipelineRunList
	if err != nil || json.Unmarshal([]byte(out), &list) != nil {
		return nil
	}
	return list.Items
}

// retrainOffline waits for the run the drift alarm started on cut, cut
// off, and returns it.
func (d *demo) retrainOffline(cut *edge) *v1alpha1.PipelineRun {
	d.step("The alarm started the retrain pipeline on %s, with no hub: it fine-tunes 1.1.0 on its own images", cut.name)
	var run *v1alpha1.PipelineRun
	done := d.poll(3*time.Minute, func() bool {
		for _, r := range d.localRuns(cut) {
			if strings.HasPrefix(r.Name, "retrain-drift-") && r.Status.Phase.Finished() {
				run = &r
				return true
			}
		}
		return false
	})
	if !d.check(done && run.Status.Phase == v1alpha1.RunSucceeded, "run %s succeeded on %s, offline", runName(run), cut.name) {
		if run != nil {
			d.show("pipeline", "describe", run.Name, "--dir", cut.dir)
		}
		return nil
	}
	d.show("pipeline", "describe", run.Name, "--dir", cut.dir)
	base, tuned, clean := stepOutput(run, "base", "accuracy"), stepOutput(run, "eval", "accuracy"), stepOutput(run, "budget", "accuracy")
	d.check(len(run.Status.Models) == 1, "it beat the served version on the labelled images the camera saw (%s against %s), kept %s on clean reference images (budget: above 60%%), and registered %s",
		percent(tuned), percent(base), percent(clean), modelOf(run))
	return run
}

// retrainSynced shows the run and its version reaching the hub once the
// link is back, and the hub promoting and signing it for the fleet.
func (d *demo) retrainSynced(cut *edge, run *v1alpha1.PipelineRun, edges []*edge, keyFile string, shifted *dataset.Set, before float64, modelSize int64) {
	d.step("With the link back, the run and the version it registered reach the hub, with their lineage")
	var hubRun v1alpha1.PipelineRun
	synced := d.poll(time.Minute, func() bool {
		out, err := d.run("get", "pipelinerun", run.Name, "-o", "json")
		return err == nil && json.Unmarshal([]byte(out), &hubRun) == nil && hubRun.Status.Phase == v1alpha1.RunSucceeded &&
			len(hubRun.Status.Models) == 1 && hubRun.Status.Models[0].Uploaded
	})
	d.show("get", "pipelineruns", "-o", "wide")
	if !d.check(synced, "the hub has run %s and %s", run.Name, modelOf(run)) {
		return
	}
	m := run.Status.Models[0]
	ref := m.Repository + "@" + m.Version
	d.show("model", "lineage", ref)

	d.step("Promote it to fashion 1.2.0, signed: every cluster fetches it, only the chunks that changed")
	down := map[*edge]int64{}
	for _, e := range edges {
		down[e] = e.link.Stats().Down
	}
	d.show("model", "promote", ref, "--to", "fashion@1.2.0", "--sign", keyFile)
	d.check(d.waitActive("1.2.0", 2*time.Minute, edges...), "every cluster serves 1.2.0")
	for _, e := range edges {
		share := float64(e.link.Stats().Down-down[e]) / float64(modelSize)
		d.check(share < 0.35, "%s's update to 1.2.0 cost %.1f%% of the model's size (the fine-tune changed the last layers only)", e.name, 100*share)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	// The agent activates a version before its server has loaded it: wait
	// until 1.2.0 answers.
	d.poll(30*time.Second, func() bool {
		_, v, err := demoInfer(d.ctx, client, cut.serve, shifted, 0, 1)
		return err == nil && v == "1.2.0"
	})
	after, err := d.inferAll(client, cut, shifted, "cam-after")
	d.check(err == nil && after > before+0.2, "on %s's washed-out images: %.1f%% predicted right, up from %.1f%% with 1.1.0", cut.name, 100*after, 100*before)

	// 1.2.0 carries the reference profile the run computed on the washed-out
	// images: what the cluster sees now is what the model was made for.
	var ds *agent.DriftState
	cleared := d.poll(30*time.Second, func() bool {
		ds, _, _ = driftOf(d.ctx, cut)
		return ds != nil && ds.Version == "1.2.0" && ds.Windows >= 2 && ds.Verdict == string(drift.VerdictNoDrift) && !ds.Alarm
	})
	d.check(cleared, "%s monitors 1.2.0 against the reference profile of its own images: the washed-out images no longer drift (%d windows), the alarm is clear", cut.name, windowsOf(ds))
	var row *v1alpha1.DriftStatus
	learnt := d.poll(30*time.Second, func() bool {
		row = d.hubDriftRow(cut.name)
		return row != nil && row.Version == "1.2.0" && !row.Alarm
	})
	d.show("drift", "status")
	d.check(learnt, "the hub shows the drift on %s cleared", cut.name)
}

func runName(r *v1alpha1.PipelineRun) string {
	if r == nil {
		return "retrain-drift-…"
	}
	return r.Name
}

func modelOf(r *v1alpha1.PipelineRun) string {
	if r == nil || len(r.Status.Models) == 0 {
		return "no version"
	}
	m := r.Status.Models[0]
	return m.Repository + "@" + m.Version
}

func stepOutput(r *v1alpha1.PipelineRun, step, output string) string {
	for _, s := range r.Status.Steps {
		if s.Name == step {
			return s.Outputs[output]
		}
	}
	return ""
}

// percent shows a share such as "0.8123" as "81.2%".
func percent(s string) string {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	return fmt.Sprintf("%.1f%%", 100*f)
}
