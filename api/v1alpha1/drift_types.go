package v1alpha1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindDriftWindowList is the kind of the answer of GET modeldeployments/{name}/drift.
const KindDriftWindowList = "DriftWindowList"

// DriftWindowList is the drift windows the hub keeps of a deployment, newest first: the answer
// of GET modeldeployments/{name}/drift?cluster=C&limit=N.
//
// +kubebuilder:object:generate=false
type DriftWindowList struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Deployment is the ModelDeployment.
	Deployment string `json:"deployment"`
	// Cluster is the cluster asked for; empty for every cluster.
	Cluster string `json:"cluster,omitempty"`
	// Items are the windows, newest (latest end) first.
	Items []DriftWindow `json:"items"`
}

// DriftWindow is one drift window report an agent sent the hub, or a run of adjacent windows
// the agent merged to stay within its outbox's budget (Windows > 1).
//
// +kubebuilder:object:generate=false
type DriftWindow struct {
	// Cluster is the cluster whose agent sent the report.
	Cluster string `json:"cluster"`
	// Version is the model version the windows served.
	Version string `json:"version"`
	// First and Last are the agent's sequence numbers of the windows; Windows counts them.
	First   uint64 `json:"first"`
	Last    uint64 `json:"last"`
	Windows int    `json:"windows"`
	// Start and End bound the samples' times, by the agent's clock.
	Start metav1.Time `json:"start"`
	End   metav1.Time `json:"end"`
	// Samples is the number of samples.
	Samples uint64 `json:"samples"`
	// Verdict is drift, no-drift or insufficient-data.
	Verdict string `json:"verdict"`
	// Alarm is whether the drift alarm was raised after the last window.
	Alarm bool `json:"alarm"`
	// Received is when the hub applied the report, by the hub's clock.
	Received metav1.Time `json:"received"`
	// Report is the report as the agent sent it: a drift.WindowReport.
	Report json.RawMessage `json:"report"`
}
