package edgerun

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
)

// RunStart is a run the agent should start.
type RunStart struct {
	// Name is the run's name: the same event always gives the same name, so
	// a start repeated after a crash starts nothing new.
	Name string
	// Pipeline is the pipeline's name, Trigger what started it.
	Pipeline, Trigger string
}

// PlanRuns decides which runs to start now: the runs requested at the
// hub, the scheduled runs that are due, and the runs the events trigger.
// lastFire holds, by pipeline, when its schedule last fired (or when the
// agent first saw it, so that a new schedule does not fire at once); the
// returned map is its new value. next is when the earliest schedule fires
// next (zero when none has one). It is pure: the same arguments give the
// same answer.
func PlanRuns(pipes []v1alpha1.DesiredPipeline, lastFire map[string]time.Time, events []agent.Event, now time.Time) (starts []RunStart, fired map[string]time.Time, next time.Time) {
	fired = make(map[string]time.Time, len(pipes))
	for _, p := range pipes {
		for _, r := range p.Runs {
			starts = append(starts, RunStart{Name: r, Pipeline: p.Name, Trigger: v1alpha1.TriggeredManual})
		}
		if p.Spec.Schedule != "" {
			last, ok := lastFire[p.Name]
			if !ok {
				last = now
			}
			fired[p.Name] = last
			if s, err := v1alpha1.ParseSchedule(p.Spec.Schedule); err == nil {
				due := s.Next(last)
				if !due.After(now) {
					// However many fire times a long outage missed, one run.
					starts = append(starts, RunStart{Name: runName(p.Name, "sched", due.UTC().Format("200601021504")),
						Pipeline: p.Name, Trigger: v1alpha1.TriggeredSchedule})
					fired[p.Name] = now
					due = s.Next(now)
				}
				if next.IsZero() || due.Before(next) {
					next = due
				}
			}
		}
		for _, ev := range events {
			for _, t := range p.Spec.Triggers {
				if t.Type != ev.Type || t.Deployment != ev.Deployment || t.FromClusters != nil {
					continue // another event, or a trigger that fires at the hub
				}
				var id string
				switch ev.Type {
				case v1alpha1.TriggerDrift:
					id = fmt.Sprint(ev.At.Unix())
				default:
					id = ev.Version
				}
				starts = append(starts, RunStart{Name: runName(p.Name, strings.ToLower(string(ev.Type)), id),
					Pipeline: p.Name, Trigger: string(ev.Type)})
			}
		}
	}
	sort.SliceStable(starts, func(i, j int) bool { return starts[i].Name < starts[j].Name })
	starts = slices.CompactFunc(starts, func(x, y RunStart) bool { return x.Name == y.Name })
	return starts, fired, next
}

// runName builds a run's name, pipeline-kind-id, as a DNS subdomain: the id's
// characters other than lowercase letters, digits, '-' and '.' become '-',
// and a name too long keeps its end.
func runName(pipeline, kind, id string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(id) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	name := pipeline + "-" + kind + "-" + strings.Trim(b.String(), "-.")
	const maxName = 253
	if len(name) > maxName {
		name = name[len(name)-maxName:]
	}
	return strings.Trim(name, "-.")
}
