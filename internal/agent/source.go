package agent

import (
	"context"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/hubclient"
)

// DesiredSource delivers a cluster's desired state documents. The hub's
// long-poll is one (the default); the ModelDeployment objects KubeStellar
// delivers into a workload cluster are another (internal/kube). Whatever
// the source, every document goes through the version guard (Decide).
type DesiredSource interface {
	// Desired returns a document whose revision is above after, waiting
	// until one comes, ctx ends, or the source's own wait ends: then it
	// returns nil and no error, and is asked again.
	Desired(ctx context.Context, after int64) (*v1alpha1.DesiredState, error)
	// Source names the source in the guard's logs and errors.
	Source() Source
}

// ReportSink takes the agent's reports: its state and a row per model.
// The hub is one (the default); the status of the ModelDeployment objects
// in a workload cluster is another.
type ReportSink interface {
	// Report delivers r; an error is retried with the next report.
	Report(ctx context.Context, r *v1alpha1.AgentReport) error
}

// hubSource is the hub's long-poll of the cluster's desired state.
type hubSource struct {
	hub     *hubclient.Client
	cluster string
	timeout time.Duration
}

// Desired implements DesiredSource.
func (s hubSource) Desired(ctx context.Context, after int64) (*v1alpha1.DesiredState, error) {
	return s.hub.DesiredState(ctx, s.cluster, after, s.timeout)
}

// Source implements DesiredSource.
func (hubSource) Source() Source { return SourceNetwork }

// hubSink sends reports to the hub.
type hubSink struct{ hub *hubclient.Client }

// Report implements ReportSink.
func (s hubSink) Report(ctx context.Context, r *v1alpha1.AgentReport) error {
	_, err := s.hub.Report(ctx, r)
	return err
}

var (
	_ DesiredSource = hubSource{}
	_ ReportSink    = hubSink{}
)
