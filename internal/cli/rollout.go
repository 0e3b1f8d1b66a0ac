package cli

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/rollout"
)

// rolloutProgress is how far a ModelDeployment has reached its clusters.
type rolloutProgress struct {
	done    bool
	failed  bool   // a Canary rollout of the resolved version stopped at a failed gate
	summary string // one line, such as "detector 1.0.0: Active on 2 of 3 clusters"
}

// rolloutOf says whether every cluster that d selects serves the version it
// resolved. A deployment that selects no cluster yet is not done: its
// clusters may still be joining.
func rolloutOf(d *v1alpha1.ModelDeployment) rolloutProgress {
	name := d.Spec.Model.Name
	if d.Status.ObservedGeneration < d.Generation {
		return rolloutProgress{summary: fmt.Sprintf("%s: the hub has not yet resolved generation %d", name, d.Generation)}
	}
	if c := meta.FindStatusCondition(d.Status.Conditions, v1alpha1.ConditionResolved); c != nil && c.Status == metav1.ConditionFalse {
		return rolloutProgress{summary: fmt.Sprintf("%s: not resolved: %s", name, c.Message)}
	}
	v := d.Status.ResolvedVersion
	if st := d.Status.Rollout; st != nil && st.Target.Version == v && st.Phase == v1alpha1.RolloutFailed {
		return rolloutProgress{failed: true, summary: fmt.Sprintf("%s %s: rollout failed: %s", name, v, st.Message)}
	}
	if len(d.Status.Clusters) == 0 {
		return rolloutProgress{summary: fmt.Sprintf("%s %s: selects no cluster yet", name, v)}
	}
	phases := map[string]int{}
	active := 0
	for _, c := range d.Status.Clusters {
		if c.Phase == v1alpha1.PhaseActive && c.ActiveVersion == v {
			active++
			continue
		}
		phase := string(c.Phase)
		switch {
		case phase == "":
			phase = string(v1alpha1.PhasePending)
		case c.Phase == v1alpha1.PhaseActive:
			phase = "still on " + c.ActiveVersion
		}
		phases[phase]++
	}
	s := fmt.Sprintf("%s %s: Active on %d of %d clusters", name, v, active, len(d.Status.Clusters))
	if len(phases) > 0 {
		var rest []string
		for p, n := range phases {
			rest = append(rest, fmt.Sprintf("%d %s", n, p))
		}
		sort.Strings(rest)
		s += " (" + strings.Join(rest, ", ") + ")"
	}
	return rolloutProgress{done: active == len(d.Status.Clusters), summary: s}
}

// waitRollout polls deployment name until rolloutOf says done, printing
// each new summary, or until timeout.
func (g *globals) waitRollout(ctx context.Context, h *hubclient.Client, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var d v1alpha1.ModelDeployment
		err := h.Get(ctx, "modeldeployments", name, &d)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("wait for modeldeployment/%s: %w", name, err)
		}
		if err == nil {
			r := rolloutOf(&d)
			if r.summary != last {
				fmt.Fprintf(g.stdout, "  %s\n", r.summary)
				last = r.summary
			}
			if r.done {
				return nil
			}
			if r.failed {
				return fmt.Errorf("modeldeployment/%s: %s", name, r.summary)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("modeldeployment/%s did not roll out within %s: %s", name, timeout, last)
		case <-tick.C:
		}
	}
}

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Watch and steer the Canary rollouts of model deployments",
		Long: `A ModelDeployment with spec.rollout.strategy Canary sends a new version to its
canary clusters first, then to waves of at most maxUnavailable clusters, each
after the previous wave served it healthy for the bake time. A failed gate
stops the rollout and rolls the clusters that got the version back, with the
reason. These commands show a rollout and steer it.`,
	}
	cmd.AddCommand(newRolloutStatusCmd(g),
		newRolloutSteerCmd(g, "pause", "Hold the next wave (gates still apply to the clusters already switched)", pauseRollout(true)),
		newRolloutSteerCmd(g, "resume", "Let a paused rollout start its next wave", pauseRollout(false)),
		newRolloutSteerCmd(g, "abort", "Stop the rollout and roll back every cluster that got the new version", annotateRollout(v1alpha1.AnnotationRolloutAbort)),
		newRolloutSteerCmd(g, "promote", "Send the new version to every remaining cluster now, skipping the waves and gates", annotateRollout(v1alpha1.AnnotationRolloutPromote)),
	)
	return cmd
}

func newRolloutStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status DEPLOYMENT [-o yaml|json]",
		Short: "Show a deployment's rollout: its waves, gates and counts, and each cluster's part",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			var d v1alpha1.ModelDeployment
			if err := h.Get(cmd.Context(), v1alpha1.PluralModelDeployments, args[0], &d); err != nil {
				return err
			}
			if output != "" {
				return printStructured(g.stdout, output, d.Status.Rollout)
			}
			fmt.Fprint(g.stdout, rolloutReport(&d))
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "yaml or json: print status.rollout as is")
	return cmd
}

// steer changes a deployment to command its rollout; it returns an error when the command
// makes no sense in the rollout's state.
type steer func(d *v1alpha1.ModelDeployment) (string, error)

func newRolloutSteerCmd(g *globals, verb, short string, change steer) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " DEPLOYMENT",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := g.hub()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// The resourceVersion read makes the write fail if the deployment changed in
			// between; then it is read and changed again.
			for attempt := 0; ; attempt++ {
				var d v1alpha1.ModelDeployment
				if err := h.Get(ctx, v1alpha1.PluralModelDeployments, args[0], &d); err != nil {
					return err
				}
				msg, err := change(&d)
				if err != nil {
					return fmt.Errorf("rollout %s %s: %w", verb, args[0], err)
				}
				d.Status = v1alpha1.ModelDeploymentStatus{}
				var stored v1alpha1.ModelDeployment
				err = h.Apply(ctx, &d, &stored)
				if hubclient.Code(err) == http.StatusConflict && attempt < 3 {
					continue
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "modeldeployment/%s: %s\n", args[0], msg)
				if st := stored.Status.Rollout; st != nil {
					fmt.Fprintf(g.stdout, "  rollout of %s: %s\n", st.Target.Version, rolloutLine(st))
				}
				return nil
			}
		},
	}
}

// pauseRollout sets spec.rollout.paused.
func pauseRollout(paused bool) steer {
	return func(d *v1alpha1.ModelDeployment) (string, error) {
		if d.Spec.Rollout.Strategy != v1alpha1.RolloutCanary {
			return "", fmt.Errorf("the deployment's rollout strategy is %s: only Canary rollouts have waves to hold", orAll(d.Spec.Rollout.Strategy))
		}
		d.Spec.Rollout.Paused = paused
		if paused {
			return "paused: no further wave starts until 'outpost rollout resume'", nil
		}
		return "resumed", nil
	}
}

// annotateRollout names the version under way in the annotation of a command.
func annotateRollout(key string) steer {
	return func(d *v1alpha1.ModelDeployment) (string, error) {
		st := d.Status.Rollout
		if st == nil || (st.Phase != v1alpha1.RolloutProgressing && st.Phase != v1alpha1.RolloutPaused) {
			phase := "none"
			if st != nil {
				phase = fmt.Sprintf("%s (%s)", st.Phase, st.Target.Version)
			}
			return "", fmt.Errorf("no rollout is under way: the last one is %s", phase)
		}
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[key] = st.Target.Version
		if key == v1alpha1.AnnotationRolloutAbort {
			return fmt.Sprintf("aborted the rollout of %s: its clusters go back to %s", st.Target.Version, st.Stable.Version), nil
		}
		return fmt.Sprintf("promoted %s to every cluster", st.Target.Version), nil
	}
}

func orAll(s v1alpha1.RolloutStrategy) v1alpha1.RolloutStrategy {
	if s == "" {
		return v1alpha1.RolloutAll
	}
	return s
}

// rolloutLine is one line of a rollout's phase, wave and counts.
func rolloutLine(st *v1alpha1.RolloutStatus) string {
	s := string(st.Phase)
	if st.Wave > 0 {
		s += fmt.Sprintf(", wave %d", st.Wave)
	}
	s += fmt.Sprintf(": %d updated, %d pending, %d skipped, %d rolled back", st.Updated, st.Pending, st.Skipped, st.RolledBack)
	return s
}

// rolloutReport is what 'outpost rollout status' prints of d.
func rolloutReport(d *v1alpha1.ModelDeployment) string {
	var b strings.Builder
	st := d.Status.Rollout
	fmt.Fprintf(&b, "modeldeployment/%s: model %s, strategy %s\n", d.Name, d.Spec.Model.Name, orAll(d.Spec.Rollout.Strategy))
	if st == nil {
		fmt.Fprintf(&b, "no rollout yet: %s\n", rolloutOf(d).summary)
		return b.String()
	}
	fmt.Fprintf(&b, "version:  %s (stable %s)\n", st.Target.Version, st.Stable.Version)
	fmt.Fprintf(&b, "rollout:  %s\n", rolloutLine(st))
	if d.Spec.Rollout.Strategy == v1alpha1.RolloutCanary && (st.Phase == v1alpha1.RolloutProgressing || st.Phase == v1alpha1.RolloutPaused) {
		p := rollout.PolicyOf(d)
		size := p.WaveSize(len(d.Status.Clusters))
		fmt.Fprintf(&b, "waves:    %d cluster(s) each, about %d more; bake %s; silent after %s\n",
			size, (int(st.Pending)+size-1)/size, p.BakeTime, p.SilentAfter)
		fmt.Fprintf(&b, "gates:    serves it; error rate at most +%.3f; p99 at most %.2fx the previous version's; after %d requests\n",
			p.MaxErrorRateIncrease, p.MaxLatencyRatio, p.MinRequests)
	}
	if len(st.FailedVersions) > 0 {
		fmt.Fprintf(&b, "failed:   %s (never given again)\n", strings.Join(st.FailedVersions, ", "))
	}
	if st.Message != "" {
		fmt.Fprintf(&b, "message:  %s\n", st.Message)
	}
	if len(st.Clusters) == 0 {
		return b.String()
	}
	rows := make(map[string]v1alpha1.ClusterDeploymentStatus, len(d.Status.Clusters))
	for _, r := range d.Status.Clusters {
		rows[r.Cluster] = r
	}
	b.WriteString("\n")
	tw := newTable(&b)
	fmt.Fprintln(tw, "CLUSTER\tWAVE\tSTATE\tGIVEN\tACTIVE\tPHASE\tREASON")
	for _, e := range st.Clusters {
		r := rows[e.Cluster]
		wave := "-"
		if e.Wave > 0 {
			wave = fmt.Sprint(e.Wave)
		}
		reason := e.Reason
		if reason == "" {
			reason = r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Cluster, wave, e.State, e.Version.Version, orDash(r.ActiveVersion),
			orDash(string(r.Phase)), orDash(reason))
	}
	tw.Flush()
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
