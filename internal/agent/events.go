package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
)

// Event is something that happened on the cluster that may start pipeline
// runs (see Config.OnEvent): a deployment's drift alarm raised, or a new
// version activated.
type Event struct {
	// Type is TriggerDrift or TriggerNewVersion.
	Type v1alpha1.TriggerType
	// Deployment is the deployment concerned.
	Deployment string
	// Version is the version activated (NewVersion) or monitored (Drift).
	Version string
	// At is when the alarm was raised (Drift): every event of one alarm
	// has the same At.
	At time.Time
}

// event calls Config.OnEvent, if set.
func (a *Agent) event(ev Event) {
	if a.cfg.OnEvent != nil {
		a.cfg.OnEvent(ev)
	}
}

// DesiredPipelines returns the pipelines of the desired state last applied:
// what the cluster should run, hub or no hub.
func (a *Agent) DesiredPipelines(ctx context.Context) ([]v1alpha1.DesiredPipeline, error) {
	raw, err := a.state.meta(ctx, metaAppliedDoc)
	if err != nil || raw == "" {
		return nil, err
	}
	var doc v1alpha1.DesiredState
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, fmt.Errorf("agent: applied desired state: %w", err)
	}
	return doc.Pipelines, nil
}
