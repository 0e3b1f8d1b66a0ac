package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/window"
)

// loadWindows takes the transfer windows of the desired state applied before a restart.
func (a *Agent) loadWindows(ctx context.Context) error {
	raw, err := a.state.meta(ctx, metaAppliedDoc)
	if err != nil || raw == "" {
		return err
	}
	var doc v1alpha1.DesiredState
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return fmt.Errorf("agent: applied desired state: %w", err)
	}
	a.setWindows(doc.Transfer)
	return nil
}

// setWindows makes p the transfer policy the agent follows (nil: none). A policy that does
// not parse (the hub validates it, so only a hub of another version sends one) is logged and
// ignored: model transfers then run at any time rather than never.
func (a *Agent) setWindows(p *v1alpha1.TransferPolicy) {
	var s *window.Schedule
	if p != nil {
		sch, err := p.Schedule()
		if err != nil {
			a.log.Error("transfer policy ignored", "err", err)
		} else {
			s = &sch
		}
	}
	a.mu.Lock()
	a.windows = s
	a.mu.Unlock()
	a.signal(a.wake)
}

// TransferAt says where p's windows stand at now for models: open or not, the cap, when
// that changes, and which deployments wait for the window with how many bytes. It returns
// nil when p is nil or does not parse.
func TransferAt(p *v1alpha1.TransferPolicy, models []DeploymentStatus, now time.Time) *v1alpha1.TransferStatus {
	if p == nil {
		return nil
	}
	s, err := p.Schedule()
	if err != nil {
		return nil
	}
	open, bps, next := s.At(now)
	ts := &v1alpha1.TransferStatus{Open: open, BandwidthBps: bps}
	if !next.IsZero() {
		t := metav1.NewTime(next.UTC().Truncate(time.Second))
		ts.NextChange = &t
	}
	if open {
		return ts
	}
	for _, m := range models {
		if m.Urgent || m.DesiredDigest == "" || m.DesiredDigest == m.ActiveDigest || m.BytesOwed == 0 {
			continue
		}
		ts.Waiting = append(ts.Waiting, m.Deployment)
		ts.WaitingBytes += m.BytesOwed
	}
	return ts
}
