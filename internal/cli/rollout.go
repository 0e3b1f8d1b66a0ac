package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/hubclient"
)

// rollout is how far a ModelDeployment has reached its clusters.
type rollout struct {
	done    bool
	summary string // one line, such as "detector 1.0.0: Active on 2 of 3 clusters"
}

// rolloutOf says whether every cluster that d selects serves the version it
// resolved. A deployment that selects no cluster yet is not done: its
// clusters may still be joining.
func rolloutOf(d *v1alpha1.ModelDeployment) rollout {
	name := d.Spec.Model.Name
	if d.Status.ObservedGeneration < d.Generation {
		return rollout{summary: fmt.Sprintf("%s: the hub has not yet resolved generation %d", name, d.Generation)}
	}
	if c := meta.FindStatusCondition(d.Status.Conditions, v1alpha1.ConditionResolved); c != nil && c.Status == metav1.ConditionFalse {
		return rollout{summary: fmt.Sprintf("%s: not resolved: %s", name, c.Message)}
	}
	v := d.Status.ResolvedVersion
	if len(d.Status.Clusters) == 0 {
		return rollout{summary: fmt.Sprintf("%s %s: selects no cluster yet", name, v)}
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
	return rollout{done: active == len(d.Status.Clusters), summary: s}
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
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("modeldeployment/%s did not roll out within %s: %s", name, timeout, last)
		case <-tick.C:
		}
	}
}
