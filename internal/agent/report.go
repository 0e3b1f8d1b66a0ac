package agent

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/placement"
	"outpost.dev/outpost/internal/variant"
)

// ConditionDowngraded is the Cluster condition an agent reports while a
// deployment serves a version lower than the one it replaced.
const ConditionDowngraded = "Downgraded"

// reportCoalesce is how long the report loop gathers triggers before sending.
const reportCoalesce = 200 * time.Millisecond

// reportLoop sends a report after state changes (coalesced) and every
// ReportInterval. A report the hub was too busy to take (429, 503) is sent
// again once the time it asked for has passed (Retry-After, or the
// backoff), and none before; another failed report is simply sent again
// later.
func (a *Agent) reportLoop(ctx context.Context) {
	tick := a.clock.NewTicker(a.cfg.ReportInterval)
	defer tick.Stop()
	busy := 0 // reports in a row the hub was too busy to take
	for {
		err := a.sendReport(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.log.Debug("report not sent", "err", err)
		}
		if hubBusy(err) {
			busy++
			if !clock.Sleep(ctx, a.clock, a.retryDelay(err, busy)) {
				return
			}
			continue
		}
		if busy > 0 {
			busy = 0
			// The report just sent covers the tick and the changes that
			// came while it waited.
			select {
			case <-tick.C():
			default:
			}
			select {
			case <-a.reportNow:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
		case <-a.reportNow:
			if !clock.Sleep(ctx, a.clock, reportCoalesce) {
				return
			}
			select {
			case <-a.reportNow:
			default:
			}
		}
	}
}

// sendReport builds and sends one report.
func (a *Agent) sendReport(ctx context.Context) error {
	r, err := a.Report(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if a.cfg.Reports != nil {
		return a.cfg.Reports.Report(rctx, r)
	}
	start := a.clock.Now()
	if err := (hubSink{a.hub}).Report(rctx, r); err != nil {
		if hubclient.Code(err) == 0 && ctx.Err() == nil {
			a.reach.failed()
		}
		return err
	}
	a.link.observeRTT(clock.Since(a.clock, start))
	a.contact(ctx)
	return nil
}

// Report builds the report the agent sends the hub: capacity, link
// estimate, cached artifacts, agent version, and a row per desired model.
func (a *Agent) Report(ctx context.Context) (*v1alpha1.AgentReport, error) {
	st, err := readStatus(ctx, a.state)
	if err != nil {
		return nil, err
	}
	mans, err := a.state.manifests(ctx)
	if err != nil {
		return nil, err
	}
	bps, rtt := a.link.estimate()
	r := &v1alpha1.AgentReport{
		APIVersion:      v1alpha1.APIVersion,
		Kind:            v1alpha1.KindAgentReport,
		Cluster:         a.name,
		AppliedRevision: st.AppliedRevision,
		RejectedStale:   st.RejectedStale,
		Status: v1alpha1.ClusterStatus{
			Capacity:     a.capacity(),
			Link:         v1alpha1.LinkStatus{BandwidthBps: bps, RTTMillis: rtt.Milliseconds()},
			AgentVersion: a.cfg.AgentVersion,
			Endpoints:    st.Endpoints,
		},
		ReportedAt: metav1.NewTime(a.clock.Now().UTC().Truncate(time.Second)),
	}
	for _, m := range mans {
		whole := true
		for _, f := range m.Files {
			if !a.cache.has(digestOf(f.Digest), f.Size) {
				whole = false
				break
			}
		}
		if whole {
			r.Status.CachedArtifacts = append(r.Status.CachedArtifacts, v1alpha1.CachedArtifact{
				Digest: m.Digest, Model: m.Model, Version: m.Version, SizeBytes: m.FilesSize,
			})
		}
	}
	a.mu.Lock()
	unservable := make(map[string]string, len(a.unservable))
	for k, v := range a.unservable {
		unservable[k] = v
	}
	a.mu.Unlock()
	r.Models, r.Status.Conditions = modelReports(st.Models, unservable, a.clock.Now())
	a.mu.Lock()
	healthOf := a.health
	a.mu.Unlock()
	if healthOf != nil {
		hs := healthOf()
		for i := range r.Models {
			m := &r.Models[i]
			if h, ok := hs[m.Deployment]; ok && h.Version == m.ActiveVersion && h.Requests > 0 {
				m.Health = &h
			}
		}
	}
	r.Status.Transfer = TransferAt(st.TransferPolicy, st.Models, a.clock.Now())
	if st.Outbox.Records > 0 || len(st.Outbox.Merged)+len(st.Outbox.Dropped)+len(st.Outbox.Refused) > 0 {
		r.Status.Outbox = &v1alpha1.OutboxStatus{Records: st.Outbox.Records, Bytes: st.Outbox.Bytes,
			Merged: st.Outbox.Merged, Dropped: st.Outbox.Dropped, Refused: st.Outbox.Refused}
	}
	return r, nil
}

// capacity is the cluster's capacity the agent reports: what it measures of
// the machine, with the declared accelerators and memory.
func (a *Agent) capacity() v1alpha1.Capacity {
	c := detectCapacity(a.cfg.Dir, a.cfg.Accelerators)
	if a.cfg.Memory > 0 {
		c.Memory = resource.NewQuantity(a.cfg.Memory, resource.BinarySI)
	}
	return c
}

// Facts are what a variant policy knows of the agent's cluster, from the
// same numbers its reports carry: its memory (declared, else measured),
// CPU and accelerators, and its link's estimated rate. The hub reads them
// from the reports in standalone mode; in a KubeStellar WEC the agent
// chooses its own variants with them (internal/kube).
func (a *Agent) Facts() variant.Facts {
	bps, _ := a.link.estimate()
	return placement.ClusterFacts(&v1alpha1.Cluster{Status: v1alpha1.ClusterStatus{
		Capacity: a.capacity(),
		Link:     v1alpha1.LinkStatus{BandwidthBps: bps},
	}})
}

// SetHealth gives the agent what reads, by deployment, the requests the inference server's
// versions answered (nil: none); reports carry it to the hub, whose rollout gates compare a
// new version's with the one it replaced.
func (a *Agent) SetHealth(f func() map[string]v1alpha1.ServingHealth) {
	a.mu.Lock()
	a.health = f
	a.mu.Unlock()
}

// modelReports turns deployment states into report rows and the cluster
// conditions that flag downgrades.
func modelReports(deps []DeploymentStatus, unservable map[string]string, now time.Time) ([]v1alpha1.ModelReport, []metav1.Condition) {
	var rows []v1alpha1.ModelReport
	var downgrades []string
	for _, d := range deps {
		mr := v1alpha1.ModelReport{
			Deployment: d.Deployment, Model: d.Model, DesiredVersion: d.DesiredVersion, ActiveVersion: d.ActiveVersion,
			Phase: d.Phase, BytesFetched: d.BytesFetched, BytesTotal: d.BytesTotal, Error: d.Error,
			Runtime: d.Runtime, ActiveVariant: d.ActiveVariant,
		}
		if mr.Error == "" && d.ServingError != "" {
			mr.Error = "serving: " + d.ServingError
		}
		if why, ok := unservable[d.Deployment]; ok && mr.Error == "" {
			mr.Error = why
			mr.ActiveVersion, mr.ActiveVariant = "", ""
		}
		if mr.Error == "" && d.ReferenceError != "" {
			mr.Error = d.ReferenceError
		}
		rows = append(rows, mr)
		if d.DowngradedFrom != "" {
			downgrades = append(downgrades, fmt.Sprintf("%s: %s downgraded from %s to %s (allowDowngrade)", d.Deployment, d.Model, d.DowngradedFrom, d.ActiveVersion))
		}
	}
	var conds []metav1.Condition
	c := metav1.Condition{Type: ConditionDowngraded, Status: metav1.ConditionFalse, Reason: "NoDowngrade",
		Message: "no deployment serves a downgraded version", LastTransitionTime: metav1.NewTime(now.UTC().Truncate(time.Second))}
	if len(downgrades) > 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, "AllowDowngrade", joinLines(downgrades)
	}
	meta.SetStatusCondition(&conds, c)
	return rows, conds
}

func joinLines(xs []string) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += "; "
		}
		s += x
	}
	return s
}
