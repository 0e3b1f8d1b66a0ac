package v1alpha1

import "testing"

func TestModelDeploymentStatusCount(t *testing.T) {
	rows := func(phases ...ClusterPhase) []ClusterDeploymentStatus {
		out := make([]ClusterDeploymentStatus, len(phases))
		for i, p := range phases {
			out[i] = ClusterDeploymentStatus{Cluster: string(rune('a' + i)), Phase: p}
		}
		return out
	}
	tests := []struct {
		name           string
		rows           []ClusterDeploymentStatus
		clusters, want int32
	}{
		{"none", nil, 0, 0},
		{"all active", rows(PhaseActive, PhaseActive), 2, 2},
		{"mixed", rows(PhaseActive, PhaseFetching, PhasePending, PhaseFailed, PhaseUnreachable, PhaseActive), 6, 2},
		{"none ready", rows(PhaseFetching), 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ModelDeploymentStatus{Clusters: tt.rows, ClusterCount: 99, ReadyClusters: 99}
			s.Count()
			if s.ClusterCount != tt.clusters || s.ReadyClusters != tt.want {
				t.Errorf("Count: %d clusters, %d ready; want %d, %d", s.ClusterCount, s.ReadyClusters, tt.clusters, tt.want)
			}
		})
	}
}

// CopyStatus, through which the hub's store writes every status, recounts
// what it copies, whatever counts the source carried.
func TestCopyStatusCounts(t *testing.T) {
	k, _ := LookupKind(KindModelDeployment)
	src := &ModelDeployment{Status: ModelDeploymentStatus{ClusterCount: 7,
		Clusters: []ClusterDeploymentStatus{{Cluster: "a", Phase: PhaseActive}, {Cluster: "b", Phase: PhasePending}}}}
	dst := &ModelDeployment{}
	k.CopyStatus(dst, src)
	if dst.Status.ClusterCount != 2 || dst.Status.ReadyClusters != 1 {
		t.Errorf("copied counts %d, %d; want 2, 1", dst.Status.ClusterCount, dst.Status.ReadyClusters)
	}
	if src.Status.ClusterCount != 7 {
		t.Errorf("CopyStatus changed its source")
	}
}
