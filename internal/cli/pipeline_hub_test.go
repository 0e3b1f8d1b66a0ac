package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/testenv"
)

const hubPipeline = `apiVersion: ml.outpost.dev/v1alpha1
kind: Pipeline
metadata: {name: retrain}
spec:
  clusterSelectors: [{matchLabels: {site: ship}}]
  schedule: "0 3 * * *"
  steps:
  - name: prep
    type: exec
    exec: {command: ["true"]}
  - name: train
    type: exec
    dependsOn: [prep]
    exec: {command: ["true"]}
    resources: {memory: 1Gi}
`

// pipelineHub is a hub with pipeline retrain applied through 'outpost apply' and cluster
// ship-1 joined: the admin's client, ship-1's agent's client, and the CLI's arguments.
type pipelineHub struct {
	admin, agent *hubclient.Client
	args         []string
}

func newPipelineHub(t *testing.T) *pipelineHub {
	t.Helper()
	url, admin := testHub(t)
	args := []string{"--hub", url, "--token", admin}
	cred := joinCluster(t, args, "ship-1")
	p := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(p, []byte(hubPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, append(args, "apply", "-f", p)...)
	ah, err := hubclient.New(url, hubclient.Options{Token: admin})
	if err != nil {
		t.Fatal(err)
	}
	gh, err := hubclient.New(url, hubclient.Options{Token: cred})
	if err != nil {
		t.Fatal(err)
	}
	return &pipelineHub{admin: ah, agent: gh, args: args}
}

// requested waits for the next run the agent's desired state requests of pipeline retrain.
func (ph *pipelineHub) requested(t *testing.T, not ...string) string {
	t.Helper()
	var name string
	testenv.WaitFor(t, 10*time.Second, "a run in ship-1's desired state", func() bool {
		ds, err := ph.agent.DesiredState(t.Context(), "ship-1", 0, 0)
		if err != nil || ds == nil {
			return false
		}
		for _, p := range ds.Pipelines {
			for _, r := range p.Runs {
				if !slices.Contains(not, r) {
					name = r
					return true
				}
			}
		}
		return false
	})
	return name
}

// report sends the run's updates as ship-1's agent does, each with the next sequence.
func (ph *pipelineHub) report(t *testing.T, name string, updates ...v1alpha1.PipelineRunStatus) {
	t.Helper()
	for i, st := range updates {
		r := &v1alpha1.PipelineRun{Spec: v1alpha1.PipelineRunSpec{Pipeline: "retrain", Cluster: "ship-1", Trigger: v1alpha1.TriggeredManual}, Status: st}
		r.Name = name
		r.Status.Sequence = int64(i + 1)
		b, err := v1alpha1.PipelineRunRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ph.agent.SendOutbox(t.Context(), "ship-1", []v1alpha1.OutboxRecord{{Key: fmt.Sprintf("%s-%d", name, i), Kind: v1alpha1.RecordKindPipelineRun,
			Created: metav1.Now(), Payload: b}})
		if err != nil || resp.Results[0].Outcome != v1alpha1.OutboxApplied {
			t.Fatalf("outbox: %+v, %v", resp, err)
		}
	}
}

func steps(phases ...v1alpha1.RunPhase) []v1alpha1.StepStatus {
	return []v1alpha1.StepStatus{{Name: "prep", Phase: phases[0]}, {Name: "train", Phase: phases[1]}}
}

// A run requested from the command line reaches the cluster's desired state, and waiting
// for it follows its steps, as the agent reports them, until it finishes.
func TestRunPipelineOnHub(t *testing.T) {
	ph := newPipelineHub(t)
	ctx := t.Context()
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() { done <- runPipelineOnHub(ctx, out, ph.admin, "retrain", "ship-1", true, time.Minute) }()
	name := ph.requested(t)
	if !strings.HasPrefix(name, "retrain-") || len(name) != len("retrain-")+5 {
		t.Errorf("run name %q", name)
	}
	// ship-1's agent has not reported: the run waits for it.
	testenv.WaitFor(t, 10*time.Second, "the link message", func() bool {
		return strings.Contains(out.String(), "cluster ship-1's agent has not reported to the hub yet: the run stays Pending")
	})
	ph.report(t, name,
		v1alpha1.PipelineRunStatus{Phase: v1alpha1.RunRunning, Steps: steps(v1alpha1.RunRunning, v1alpha1.RunPending)},
		v1alpha1.PipelineRunStatus{Phase: v1alpha1.RunRunning, Steps: steps(v1alpha1.RunSucceeded, v1alpha1.RunRunning)},
		v1alpha1.PipelineRunStatus{Phase: v1alpha1.RunSucceeded, Steps: steps(v1alpha1.RunSucceeded, v1alpha1.RunSucceeded),
			Models: []v1alpha1.ProducedModel{{Repository: "edge/ship-1/fmnist", Version: "1.3.0", Digest: "sha256:ab"}}})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runPipelineOnHub = %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("runPipelineOnHub still waits:\n%s", out.String())
	}
	text := out.String()
	for _, re := range []string{
		`^pipelinerun/` + name + ` created: pipeline retrain on cluster ship-1\n`,
		`pipelinerun/` + name + `: Pending\n`,
		`(?s)  step prep: Running\n.*  step prep: Succeeded\n.*  step train: Succeeded\n.*pipelinerun/` + name + `: Succeeded\nregistered edge/ship-1/fmnist@1.3.0 sha256:ab\n$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("output lacks %s:\n%s", re, text)
		}
	}
	// The run left the desired state once finished.
	if ds, err := ph.agent.DesiredState(ctx, "ship-1", 0, 0); err != nil || len(ds.Pipelines) != 1 || len(ds.Pipelines[0].Runs) != 0 {
		t.Errorf("desired state after the run: %+v, %v", ds, err)
	}

	// 'outpost get' shows pipelines and runs.
	get := mustCLI(t, append(ph.args, "get", "pipelines")...)
	if !regexp.MustCompile(`NAME\s+STEPS\s+SCHEDULE\s+CLUSTERS\s+LAST RUN\s+AGE\nretrain\s+2\s+0 3 \* \* \*\s+1\s+` + name + ` \(Succeeded, ship-1\)`).MatchString(get) {
		t.Errorf("get pipelines:\n%s", get)
	}
	wide := mustCLI(t, append(ph.args, "get", "pl", "-o", "wide")...)
	if !regexp.MustCompile(`PIPELINE\s+CLUSTER\s+LAST RUN\s+PHASE\s+UPDATED\nretrain\s+ship-1\s+` + name + `\s+Succeeded\s+\S+`).MatchString(wide) {
		t.Errorf("get pipelines -o wide:\n%s", wide)
	}
	runs := mustCLI(t, append(ph.args, "get", "pipelineruns")...)
	if !regexp.MustCompile(`NAME\s+PIPELINE\s+CLUSTER\s+PHASE\s+STEPS\s+AGE\n` + name + `\s+retrain\s+ship-1\s+Succeeded\s+2/2\s+`).MatchString(runs) {
		t.Errorf("get pipelineruns:\n%s", runs)
	}
	if y := mustCLI(t, append(ph.args, "get", "pr", name, "-o", "yaml")...); !strings.Contains(y, "sequence: 3") {
		t.Errorf("get pr -o yaml:\n%s", y)
	}
}

// A failed run is an error that names the failed step, and its log tail comes from the hub
// with where the whole log is.
func TestRunPipelineOnHubFails(t *testing.T) {
	ph := newPipelineHub(t)
	ctx := t.Context()
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() { done <- runPipelineOnHub(ctx, out, ph.admin, "retrain", "ship-1", true, time.Minute) }()
	name := ph.requested(t)
	failed := steps(v1alpha1.RunSucceeded, v1alpha1.RunFailed)
	failed[1].Message, failed[1].Attempts = "exit status 3\nmore", 2
	failed[1].LogTail = strings.Repeat("epoch 1 loss 0.9\n", 200) + "out of memory\n"
	ph.report(t, name, v1alpha1.PipelineRunStatus{Phase: v1alpha1.RunFailed, Message: "step train failed", Steps: failed})
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("runPipelineOnHub still waits:\n%s", out.String())
	}
	want := "pipelinerun/" + name + " failed: step train failed; step train: exit status 3 (the end of its log: outpost pipeline logs " + name + " train)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
	if !strings.Contains(out.String(), "  step train: Failed (attempt 2): exit status 3\n") {
		t.Errorf("output:\n%s", out.String())
	}

	var logs bytes.Buffer
	if err := pipelineLogsFromHub(ctx, &logs, ph.admin, name, "train"); err != nil {
		t.Fatal(err)
	}
	text := logs.String()
	if !strings.HasPrefix(text, "==> step train (Failed): the last 2.0 KiB of its log, as cluster ship-1 last sent it <==\n") ||
		!strings.Contains(text, "epoch 1 loss 0.9\nout of memory\n") ||
		!strings.HasSuffix(text, "the whole log stays on cluster ship-1: 'outpost pipeline logs "+name+" train --dir DIR' there.\n") {
		t.Errorf("logs:\n%s", text)
	}
	logs.Reset()
	if err := pipelineLogsFromHub(ctx, &logs, ph.admin, name, ""); err != nil || !strings.Contains(logs.String(), "==> step prep (Succeeded): no log synced to the hub <==") {
		t.Errorf("all logs = %v:\n%s", err, logs.String())
	}
	if err := pipelineLogsFromHub(ctx, &logs, ph.admin, name, "deploy"); err == nil || !strings.Contains(err.Error(), `has no step "deploy" (its steps: prep, train)`) {
		t.Errorf("unknown step: %v", err)
	}
	if err := pipelineLogsFromHub(ctx, &logs, ph.admin, "nope", "train"); err == nil || !strings.Contains(err.Error(), "pipelinerun nope") {
		t.Errorf("unknown run: %v", err)
	}
}

// Without waiting, the run is created and named; a run the hub cannot place is refused
// naming the field; a wait that runs out says where the run is; a cluster whose link is
// down is said to be.
func TestRunPipelineOnHubRefusalsAndWaits(t *testing.T) {
	ph := newPipelineHub(t)
	ctx := t.Context()
	var out bytes.Buffer
	if err := runPipelineOnHub(ctx, &out, ph.admin, "retrain", "ship-1", false, 0); err != nil {
		t.Fatal(err)
	}
	first := ph.requested(t)
	if !strings.HasPrefix(out.String(), "pipelinerun/"+first+" created") {
		t.Errorf("output %q", out.String())
	}
	for _, tt := range []struct{ pipeline, cluster, want string }{
		{"nope", "ship-1", `spec.pipeline: Not found: "nope"`},
		{"retrain", "ghost", `spec.cluster: Not found: "ghost"`},
	} {
		if err := runPipelineOnHub(ctx, &out, ph.admin, tt.pipeline, tt.cluster, false, 0); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run %s on %s = %v, want %q", tt.pipeline, tt.cluster, err, tt.want)
		}
	}

	// The agent reported once, then fell silent: its link is down.
	ph.report(t, first, v1alpha1.PipelineRunStatus{Phase: v1alpha1.RunRunning, Steps: steps(v1alpha1.RunRunning, v1alpha1.RunPending)})
	var c v1alpha1.Cluster
	if err := ph.admin.Get(ctx, "clusters", "ship-1", &c); err != nil {
		t.Fatal(err)
	}
	seen := metav1.NewTime(time.Now().Add(-time.Hour))
	c.Status.Link = v1alpha1.LinkStatus{State: v1alpha1.LinkDisconnected, LastSeen: &seen}
	if _, err := ph.admin.Do(ctx, "PUT", "clusters/ship-1/status", nil, &c, nil); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := runPipelineOnHub(wctx, &out, ph.admin, "retrain", "ship-1", true, 2*time.Second)
	if err == nil || !regexp.MustCompile(`pipelinerun/retrain-\w+ did not finish within 2s: Pending, 0 of 0 steps finished`).MatchString(err.Error()) {
		t.Errorf("wait = %v", err)
	}
	if !regexp.MustCompile(`cluster ship-1's link is down \(its agent was last heard from 1h0m\d+s ago\): the run stays Pending, and starts when the agent next hears from the hub\n`).MatchString(out.String()) {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestLinkDown(t *testing.T) {
	now := time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-d)); return &t }
	for _, tt := range []struct {
		link v1alpha1.LinkStatus
		want string
	}{
		{v1alpha1.LinkStatus{}, "has not reported to the hub yet"},
		{v1alpha1.LinkStatus{State: v1alpha1.LinkConnected, LastSeen: at(time.Second)}, ""},
		{v1alpha1.LinkStatus{State: v1alpha1.LinkDegraded, LastSeen: at(time.Second)}, ""},
		{v1alpha1.LinkStatus{State: v1alpha1.LinkDisconnected, LastSeen: at(90 * time.Minute)}, "link is down (its agent was last heard from 1h30m0s ago)"},
	} {
		c := &v1alpha1.Cluster{Status: v1alpha1.ClusterStatus{Link: tt.link}}
		c.Name = "ship-1"
		got := linkDown(c, now)
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("linkDown(%+v) = %q, want %q", tt.link, got, tt.want)
		}
	}
}
