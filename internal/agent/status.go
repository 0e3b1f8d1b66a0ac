package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/outbox"
)

// Status is the agent's state as read from its data directory, with no hub.
type Status struct {
	// Cluster is the cluster name.
	Cluster string `json:"cluster"`
	// Hub is the hub's URL.
	Hub string `json:"hub,omitempty"`
	// LastContact is when the hub last answered.
	LastContact *time.Time `json:"lastContact,omitempty"`
	// AppliedRevision is the highest desired state revision applied.
	AppliedRevision int64 `json:"appliedRevision"`
	// RejectedStale counts refused stale desired states.
	RejectedStale int64 `json:"rejectedStale"`
	// LastRejection says when and why a desired state was last refused.
	LastRejection string `json:"lastRejection,omitempty"`
	// Models has a row per deployment.
	Models []DeploymentStatus `json:"models"`
	// BytesOwed is what every deployment still has to fetch.
	BytesOwed int64 `json:"bytesOwed"`
	// Outbox is what waits for the hub, and what the budget made the agent
	// merge or drop.
	Outbox outbox.Stats `json:"outbox"`
	// Endpoints are where the running agent answers inference requests, as
	// last given to SetEndpoints; nil when it serves none or is stopped.
	Endpoints *v1alpha1.ServingEndpoints `json:"endpoints,omitempty"`
	// TransferPolicy is the cluster's transfer policy from the applied desired state.
	TransferPolicy *v1alpha1.TransferPolicy `json:"transferPolicy,omitempty"`
	// Transfer is where the policy's windows stood when the status was read, and what
	// waits for them.
	Transfer *v1alpha1.TransferStatus `json:"transfer,omitempty"`
}

// DeploymentStatus is one deployment's state.
type DeploymentStatus struct {
	Deployment     string                `json:"deployment"`
	Model          string                `json:"model"`
	ActiveVersion  string                `json:"activeVersion,omitempty"`
	ActiveDigest   string                `json:"activeDigest,omitempty"`
	ActiveVariant  string                `json:"activeVariant,omitempty"`
	ActivatedAt    *time.Time            `json:"activatedAt,omitempty"`
	DesiredVersion string                `json:"desiredVersion"`
	DesiredDigest  string                `json:"desiredDigest"`
	Phase          v1alpha1.ClusterPhase `json:"phase"`
	BytesFetched   int64                 `json:"bytesFetched"`
	BytesTotal     int64                 `json:"bytesTotal"`
	// BytesOwed is how many bytes of the desired version have not crossed
	// the link yet; before fetching began, the version's size stands in.
	BytesOwed int64 `json:"bytesOwed"`
	// DowngradedFrom is set when the active version replaced a higher one.
	DowngradedFrom string `json:"downgradedFrom,omitempty"`
	Error          string `json:"error,omitempty"`
	// Runtime is the inference runtime serving the deployment: go or onnxruntime.
	Runtime string `json:"runtime,omitempty"`
	// ServingError says why the active version does not answer requests.
	ServingError string `json:"servingError,omitempty"`
	// ServingPort is the deployment's own inference port, when it asked
	// for one (spec.serving.port) and it is open.
	ServingPort int32 `json:"servingPort,omitempty"`
	// Reference is the digest of the active version's reference profile,
	// the baseline of drift monitoring, when the agent holds one.
	Reference string `json:"reference,omitempty"`
	// ReferenceError says why the active version's reference profile is
	// unusable: the version serves, but is not monitored against it.
	ReferenceError string `json:"referenceError,omitempty"`
	// Drift is the deployment's drift monitoring at the edge, while the
	// inference server monitors it.
	Drift *DriftState `json:"drift,omitempty"`
	// Urgent is set when the desired version moves outside the transfer windows.
	Urgent bool `json:"urgent,omitempty"`
}

// metaServing holds the serving states last given to SetServing, as JSON.
const metaServing = "serving"

// metaEndpoints holds the endpoints last given to SetEndpoints, as JSON.
const metaEndpoints = "endpoints"

// SetEndpoints records where the agent's inference server answers (nil:
// nowhere, as when it serves nothing or stops). Status and the next report,
// and so the Cluster's status on the hub, show it.
func (a *Agent) SetEndpoints(ctx context.Context, e *v1alpha1.ServingEndpoints) error {
	var raw string
	if e != nil && *e != (v1alpha1.ServingEndpoints{}) {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		raw = string(b)
	}
	if err := a.state.setMeta(ctx, metaEndpoints, raw); err != nil {
		return fmt.Errorf("agent: record serving endpoints: %w", err)
	}
	a.signal(a.reportNow)
	return nil
}

// ServingState is how the inference server serves one deployment.
type ServingState struct {
	// Version is the version answering requests; empty while none does.
	Version string `json:"version,omitempty"`
	// Runtime is the runtime serving Version: go or onnxruntime.
	Runtime string `json:"runtime,omitempty"`
	// Error says why the active version does not answer requests.
	Error string `json:"error,omitempty"`
	// Port is the deployment's own inference port, when open.
	Port int32 `json:"port,omitempty"`
}

// metaDrift holds the drift states last given to SetDrift, as JSON.
const metaDrift = "drift"

// DriftState is the drift monitoring of one deployment, as the inference
// server last recorded it (see docs/drift.md).
type DriftState struct {
	// Version is the model version monitored.
	Version string `json:"version"`
	// Windows is how many windows closed since monitoring of Version began.
	Windows uint64 `json:"windows"`
	// Verdict and Reason are the last window's drift verdict and why;
	// empty before the first window closed.
	Verdict string `json:"verdict,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// LastWindow is when the last window closed.
	LastWindow time.Time `json:"lastWindow,omitzero"`
	// Alarm is whether the drift alarm is raised, and Since when it last
	// changed (when monitoring began, if it never did).
	Alarm bool      `json:"alarm"`
	Since time.Time `json:"since,omitzero"`
	// Samples counts the samples monitored; Dropped the requests left
	// unmonitored because the monitor's queue was full, Skipped those it
	// could not summarise; Invalid the NaN and infinite values seen.
	Samples uint64 `json:"samples"`
	Dropped uint64 `json:"dropped,omitempty"`
	Skipped uint64 `json:"skipped,omitempty"`
	Invalid uint64 `json:"invalid,omitempty"`
	// Feedback is how Version did on the samples whose true labels came
	// back (POST /v2/models/NAME/feedback), when the deployment keeps
	// feedback samples; FeedbackLost counts the requests with ids that
	// could not be kept.
	Feedback     *FeedbackState `json:"feedback,omitempty"`
	FeedbackLost uint64         `json:"feedbackLost,omitempty"`
	// Busy is the time the monitor spent working since monitoring of
	// Version began.
	Busy time.Duration `json:"busyNanos,omitempty"`
}

// FeedbackState is a version's accuracy on its labelled samples.
type FeedbackState struct {
	// Labelled samples, Correct of them as the version predicted.
	Labelled int `json:"labelled"`
	Correct  int `json:"correct"`
}

// SetDrift records the drift monitoring of each deployment, by deployment
// name, replacing what was recorded before. Status shows it; reports to the
// hub do not carry it, since the hub learns drift from the windows in the
// outbox. It is meant to be called after every closed window, and is one
// small write.
func (a *Agent) SetDrift(ctx context.Context, states map[string]DriftState) error {
	b, err := json.Marshal(states)
	if err != nil {
		return err
	}
	if err := a.state.setMeta(ctx, metaDrift, string(b)); err != nil {
		return fmt.Errorf("agent: record drift state: %w", err)
	}
	for dep, s := range states {
		if s.Alarm {
			a.event(Event{Type: v1alpha1.TriggerDrift, Deployment: dep, Version: s.Version, At: s.Since})
		}
	}
	return nil
}

// Status returns the agent's state, as ReadStatus reads it, from the
// agent's open database.
func (a *Agent) Status(ctx context.Context) (*Status, error) {
	st, err := readStatus(ctx, a.state)
	if err != nil {
		return nil, err
	}
	st.Transfer = TransferAt(st.TransferPolicy, st.Models, a.clock.Now())
	return st, nil
}

// SetServing records how each deployment is served, by deployment name,
// replacing what was recorded before. Status and the next report show it.
func (a *Agent) SetServing(ctx context.Context, states map[string]ServingState) error {
	b, err := json.Marshal(states)
	if err != nil {
		return err
	}
	if err := a.state.setMeta(ctx, metaServing, string(b)); err != nil {
		return fmt.Errorf("agent: record serving state: %w", err)
	}
	a.signal(a.reportNow)
	return nil
}

// ReadStatus reads the state of the agent whose data directory is dir. It
// needs no hub and works while the agent runs.
func ReadStatus(ctx context.Context, dir string) (*Status, error) {
	path := filepath.Join(dir, dbFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s is not an agent data directory: %w", dir, err)
	}
	st, err := openState(ctx, path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	out, err := readStatus(ctx, st)
	if err != nil {
		return nil, err
	}
	out.Transfer = TransferAt(out.TransferPolicy, out.Models, time.Now())
	return out, nil
}

func readStatus(ctx context.Context, s *stateDB) (*Status, error) {
	out := &Status{Models: []DeploymentStatus{}}
	err := s.view(ctx, func(tx *sql.Tx) error {
		var err error
		if out.Cluster, err = getMeta(ctx, tx, metaCluster); err != nil {
			return err
		}
		if out.Hub, err = getMeta(ctx, tx, metaHub); err != nil {
			return err
		}
		lc, err := getMeta(ctx, tx, metaLastContact)
		if err != nil {
			return err
		}
		if t := parseTime(lc); !t.IsZero() {
			out.LastContact = &t
		}
		if out.AppliedRevision, err = getMetaInt(ctx, tx, metaAppliedRevision); err != nil {
			return err
		}
		if out.RejectedStale, err = getMetaInt(ctx, tx, metaRejectedStale); err != nil {
			return err
		}
		if raw, err := getMeta(ctx, tx, metaAppliedDoc); err != nil {
			return err
		} else if raw != "" {
			var doc v1alpha1.DesiredState
			// The applied document was checked when applied; a bad one shows no policy.
			if json.Unmarshal([]byte(raw), &doc) == nil {
				out.TransferPolicy = doc.Transfer
			}
		}
		if out.LastRejection, err = getMeta(ctx, tx, metaLastRejection); err != nil {
			return err
		}
		if raw, err := getMeta(ctx, tx, metaEndpoints); err != nil {
			return err
		} else if raw != "" {
			var e v1alpha1.ServingEndpoints
			// Endpoints are advisory: a malformed record shows none.
			if json.Unmarshal([]byte(raw), &e) == nil {
				out.Endpoints = &e
			}
		}
		rows, err := listDeployments(ctx, tx)
		if err != nil {
			return err
		}
		raw, err := getMeta(ctx, tx, metaServing)
		if err != nil {
			return err
		}
		serving := map[string]ServingState{}
		if raw != "" {
			// Serving states are advisory: a malformed record shows none.
			_ = json.Unmarshal([]byte(raw), &serving)
		}
		profiles, err := manifestProfiles(ctx, tx)
		if err != nil {
			return err
		}
		if raw, err = getMeta(ctx, tx, metaDrift); err != nil {
			return err
		}
		drift := map[string]DriftState{}
		if raw != "" {
			// So are drift states.
			_ = json.Unmarshal([]byte(raw), &drift)
		}
		for _, r := range rows {
			d := deploymentStatus(r)
			if sv, ok := serving[r.Name]; ok {
				d.Runtime, d.ServingError, d.ServingPort = sv.Runtime, sv.Error, sv.Port
			}
			if p, ok := profiles[r.ActiveDigest]; ok && r.ActiveDigest != "" {
				d.Reference, d.ReferenceError = p[0], p[1]
			}
			if ds, ok := drift[r.Name]; ok {
				d.Drift = &ds
			}
			out.Models = append(out.Models, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, d := range out.Models {
		out.BytesOwed += d.BytesOwed
	}
	if out.Outbox, err = outbox.ReadStats(ctx, s.db); err != nil {
		return nil, err
	}
	return out, nil
}

// manifestProfiles returns each cached manifest's reference profile digest
// and profile error.
func manifestProfiles(ctx context.Context, tx *sql.Tx) (map[string][2]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT digest, profile_digest, profile_error FROM manifests`)
	if err != nil {
		return nil, fmt.Errorf("state: manifests: %w", err)
	}
	defer rows.Close()
	out := map[string][2]string{}
	for rows.Next() {
		var d string
		var p [2]string
		if err := rows.Scan(&d, &p[0], &p[1]); err != nil {
			return nil, err
		}
		out[d] = p
	}
	return out, rows.Err()
}

func deploymentStatus(r deploymentRow) DeploymentStatus {
	d := DeploymentStatus{
		Deployment: r.Name, Model: r.Desired.Model,
		ActiveVersion: r.ActiveVersion, ActiveDigest: r.ActiveDigest, ActiveVariant: r.ActiveVariant,
		DesiredVersion: r.Desired.Version, DesiredDigest: r.Desired.Digest,
		Phase: r.Phase, BytesFetched: r.BytesFetched, BytesTotal: r.BytesTotal,
		DowngradedFrom: r.DowngradedFrom, Error: r.Error, Urgent: r.Desired.Urgent,
	}
	if !r.ActivatedAt.IsZero() {
		t := r.ActivatedAt
		d.ActivatedAt = &t
	}
	switch {
	case r.ActiveDigest == r.Desired.Digest:
		d.BytesOwed = 0
	case PlanModel(r.deployed(), r.Desired).Step.keepsActive():
		d.BytesOwed = 0
	case r.BytesTotal > 0:
		d.BytesOwed = max(r.BytesTotal-r.BytesFetched, 0)
	default:
		d.BytesOwed = r.Desired.SizeBytes
	}
	return d
}

// digestOf converts a stored digest string.
func digestOf(s string) digest.Digest { return digest.Digest(s) }
