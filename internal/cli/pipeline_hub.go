package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/hubclient"
)

// runWatchSeconds bounds one long-poll of a run's changes: between them the cluster's link
// is looked at again.
const runWatchSeconds = 30

// runPipelineOnHub asks the hub h to run pipeline on cluster: it creates a PipelineRun
// named <pipeline>-<5 random characters>, which the hub refuses (naming the field) when the
// pipeline or the cluster does not exist, the pipeline does not select the cluster, or a
// step does not fit it. It prints the run's name, and says so when the cluster's link is
// down: the run then stays Pending, and starts when the agent next hears from the hub.
// With wait it follows the run, printing each change of the run's and its steps' phases,
// until it finishes or timeout passes; a run that failed, or did not finish in time, is an
// error.
func runPipelineOnHub(ctx context.Context, out io.Writer, h *hubclient.Client, pipeline, cluster string, wait bool, timeout time.Duration) error {
	name, err := newRunName(ctx, h, pipeline)
	if err != nil {
		return err
	}
	run := &v1alpha1.PipelineRun{Spec: v1alpha1.PipelineRunSpec{Pipeline: pipeline, Cluster: cluster, Trigger: v1alpha1.TriggeredManual}}
	run.Name = name
	v1alpha1.SetTypeMeta(run)
	var created v1alpha1.PipelineRun
	if err := h.Apply(ctx, run, &created); err != nil {
		return fmt.Errorf("run pipeline %s on cluster %s: %w", pipeline, cluster, err)
	}
	fmt.Fprintf(out, "pipelinerun/%s created: pipeline %s on cluster %s\n", name, pipeline, cluster)
	link := clusterLink(ctx, h, cluster)
	if link != "" {
		fmt.Fprintln(out, link)
	}
	if !wait {
		return nil
	}
	return followRun(ctx, out, h, &created, link, timeout)
}

// newRunName returns <pipeline>-<5 random characters>, a name no run at the hub has.
func newRunName(ctx context.Context, h *hubclient.Client, pipeline string) (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	prefix := strings.TrimRight(v1alpha1.Head(pipeline, 253-6), "-.")
	for range 5 {
		var b [5]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		for i := range b {
			b[i] = alphabet[int(b[i])%len(alphabet)]
		}
		name := prefix + "-" + string(b[:])
		var r v1alpha1.PipelineRun
		switch err := h.Get(ctx, v1alpha1.PluralPipelineRuns, name, &r); {
		case hubclient.Code(err) == http.StatusNotFound:
			return name, nil
		case err != nil:
			return "", fmt.Errorf("run pipeline %s: %w", pipeline, err)
		}
	}
	return "", fmt.Errorf("run pipeline %s: no free run name found", pipeline)
}

// clusterLink says why a run on cluster will not start now, as far as the hub knows: the
// agent never reported, or its link is down; "" when neither, or when the hub cannot say.
func clusterLink(ctx context.Context, h *hubclient.Client, cluster string) string {
	var c v1alpha1.Cluster
	if err := h.Get(ctx, v1alpha1.PluralClusters, cluster, &c); err != nil {
		return ""
	}
	return linkDown(&c, time.Now())
}

// linkDown is clusterLink's message for c at now.
func linkDown(c *v1alpha1.Cluster, now time.Time) string {
	l := c.Status.Link
	switch {
	case l.LastSeen == nil:
		return fmt.Sprintf("cluster %s's agent has not reported to the hub yet: the run stays Pending, and starts when the agent first hears from the hub", c.Name)
	case l.State == v1alpha1.LinkDisconnected:
		ago := now.Sub(l.LastSeen.Time).Truncate(time.Second)
		return fmt.Sprintf("cluster %s's link is down (its agent was last heard from %s ago): the run stays Pending, and starts when the agent next hears from the hub",
			c.Name, ago)
	}
	return ""
}

// followRun prints the changes of run until it finishes or timeout passes; link is what
// was said of the cluster's link already.
func followRun(ctx context.Context, out io.Writer, h *hubclient.Client, run *v1alpha1.PipelineRun, link string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p := runPrinter{out: out, steps: map[string]v1alpha1.RunPhase{}}
	p.show(run)
	rv := run.ResourceVersion
	for !run.Status.Phase.Finished() {
		wait := runWatchSeconds
		if d, ok := ctx.Deadline(); ok {
			wait = max(1, min(wait, int(time.Until(d)/time.Second)))
		}
		var evs v1alpha1.WatchEventList
		q := url.Values{"watch": {"true"}, "resourceVersion": {rv}, "timeoutSeconds": {strconv.Itoa(wait)}}
		_, err := h.Do(ctx, http.MethodGet, v1alpha1.PluralPipelineRuns, q, nil, &evs)
		switch {
		case ctx.Err() != nil:
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("pipelinerun/%s did not finish within %s: %s", run.Name, timeout, p.summary(run))
			}
			return ctx.Err()
		case hubclient.Code(err) == http.StatusGone:
			// The hub no longer keeps the changes after rv: read the run afresh.
			var r v1alpha1.PipelineRun
			if err := h.Get(ctx, v1alpha1.PluralPipelineRuns, run.Name, &r); err != nil {
				return fmt.Errorf("follow pipelinerun/%s: %w", run.Name, err)
			}
			run, rv = &r, r.ResourceVersion
			p.show(run)
			continue
		case err != nil:
			return fmt.Errorf("follow pipelinerun/%s: %w", run.Name, err)
		}
		rv = evs.ResourceVersion
		for _, ev := range evs.Items {
			var r v1alpha1.PipelineRun
			if err := json.Unmarshal(ev.Object, &r); err != nil || r.Name != run.Name {
				continue
			}
			if ev.Type == "DELETED" {
				return fmt.Errorf("pipelinerun/%s was deleted", run.Name)
			}
			run = &r
			p.show(run)
		}
		if len(evs.Items) == 0 {
			if l := clusterLink(ctx, h, run.Spec.Cluster); l != link && ctx.Err() == nil {
				if l == "" {
					l = fmt.Sprintf("cluster %s's agent is in touch with the hub again", run.Spec.Cluster)
				}
				fmt.Fprintln(out, l)
				link = l
			}
		}
	}
	return p.result(run)
}

// runPrinter prints the changes of one run's phases.
type runPrinter struct {
	out   io.Writer
	phase v1alpha1.RunPhase
	steps map[string]v1alpha1.RunPhase
}

// show prints what changed in run since it was last shown.
func (p *runPrinter) show(run *v1alpha1.PipelineRun) {
	for _, st := range run.Status.Steps {
		if p.steps[st.Name] == st.Phase {
			continue
		}
		p.steps[st.Name] = st.Phase
		line := fmt.Sprintf("  step %s: %s", st.Name, st.Phase)
		var notes []string
		if st.Cached {
			notes = append(notes, "cached")
		}
		if st.Attempts > 1 {
			notes = append(notes, fmt.Sprintf("attempt %d", st.Attempts))
		}
		if st.Adapted != "" {
			notes = append(notes, "adapted: "+st.Adapted)
		}
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
		if st.Message != "" && (st.Phase == v1alpha1.RunFailed || st.Phase == v1alpha1.RunSkipped) {
			line += ": " + headLine(st.Message)
		}
		fmt.Fprintln(p.out, line)
	}
	if phase := runPhase(run); phase != p.phase {
		p.phase = phase
		fmt.Fprintf(p.out, "pipelinerun/%s: %s\n", run.Name, phase)
	}
}

// summary says where run is, for a message.
func (p *runPrinter) summary(run *v1alpha1.PipelineRun) string {
	done := 0
	for _, st := range run.Status.Steps {
		if st.Phase.Finished() {
			done++
		}
	}
	return fmt.Sprintf("%s, %d of %d steps finished", runPhase(run), done, len(run.Status.Steps))
}

// result is nil for a run that succeeded (or was skipped), after saying what it
// registered, and an error naming the failed steps otherwise.
func (p *runPrinter) result(run *v1alpha1.PipelineRun) error {
	for _, m := range run.Status.Models {
		fmt.Fprintf(p.out, "registered %s@%s %s\n", m.Repository, m.Version, m.Digest)
	}
	if run.Status.Phase != v1alpha1.RunFailed {
		return nil
	}
	var why []string
	if run.Status.Message != "" {
		why = append(why, headLine(run.Status.Message))
	}
	var failed []string
	for _, st := range run.Status.Steps {
		if st.Phase == v1alpha1.RunFailed {
			failed = append(failed, st.Name)
			if st.Message != "" {
				why = append(why, "step "+st.Name+": "+headLine(st.Message))
			}
		}
	}
	msg := fmt.Sprintf("pipelinerun/%s failed", run.Name)
	if len(why) > 0 {
		msg += ": " + strings.Join(why, "; ")
	}
	if len(failed) > 0 {
		msg += fmt.Sprintf(" (the end of its log: outpost pipeline logs %s %s)", run.Name, failed[0])
	}
	return errors.New(msg)
}

func runPhase(run *v1alpha1.PipelineRun) v1alpha1.RunPhase {
	if run.Status.Phase == "" {
		return v1alpha1.RunPending
	}
	return run.Status.Phase
}

// headLine is the first line of s, for a message of one line.
func headLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// pipelineLogsFromHub prints the log tail the cluster last sent the hub of step of run, or
// of every step when step is empty, saying that it is the end of the log only and where
// the whole log is: on the cluster, which keeps it.
func pipelineLogsFromHub(ctx context.Context, out io.Writer, h *hubclient.Client, run, step string) error {
	var r v1alpha1.PipelineRun
	if err := h.Get(ctx, v1alpha1.PluralPipelineRuns, run, &r); err != nil {
		return fmt.Errorf("pipelinerun %s: %w", run, err)
	}
	steps := r.Status.Steps
	if step != "" {
		var names []string
		var found *v1alpha1.StepStatus
		for i := range steps {
			names = append(names, steps[i].Name)
			if steps[i].Name == step {
				found = &steps[i]
			}
		}
		switch {
		case found != nil:
			steps = []v1alpha1.StepStatus{*found}
		case len(names) == 0:
			return fmt.Errorf("pipelinerun %s has no step %q: cluster %s has reported no step of it yet (the run is %s)",
				run, step, r.Spec.Cluster, runPhase(&r))
		default:
			return fmt.Errorf("pipelinerun %s has no step %q (its steps: %s)", run, step, strings.Join(names, ", "))
		}
	}
	if len(steps) == 0 {
		fmt.Fprintf(out, "pipelinerun %s: cluster %s has reported no step yet (the run is %s)\n", run, r.Spec.Cluster, runPhase(&r))
	}
	for _, st := range steps {
		if st.LogTail == "" {
			fmt.Fprintf(out, "==> step %s (%s): no log synced to the hub <==\n", st.Name, st.Phase)
			continue
		}
		fmt.Fprintf(out, "==> step %s (%s): the last %s of its log, as cluster %s last sent it <==\n",
			st.Name, st.Phase, bytesize.Format(int64(len(st.LogTail))), r.Spec.Cluster)
		fmt.Fprint(out, st.LogTail)
		if !strings.HasSuffix(st.LogTail, "\n") {
			fmt.Fprintln(out)
		}
	}
	which := step
	if which == "" {
		which = "STEP"
	}
	fmt.Fprintf(out, "The hub keeps only the last %s of each step's log; the whole log stays on cluster %s: 'outpost pipeline logs %s %s --dir DIR' there.\n",
		bytesize.Format(v1alpha1.MaxStepLogTailBytes), r.Spec.Cluster, run, which)
	return nil
}
