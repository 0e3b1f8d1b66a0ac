package chaos

import (
	"reflect"
	"strings"
	"testing"
)

func doc(agent int, rev int64, models ...DocModel) Doc {
	return Doc{Agent: agent, Revision: rev, Models: models}
}

func dm(dep, version string, allow bool) DocModel {
	return DocModel{Deployment: dep, Model: "m", Version: version, Digest: "sha256:" + version, AllowDowngrade: allow}
}

func sample(agent int, applied int64, active ...string) Sample {
	s := Sample{Agent: agent, Applied: applied}
	for i := 0; i+1 < len(active); i += 2 {
		s.Models = append(s.Models, ModelState{Deployment: active[i], Model: "m", Active: active[i+1], ActiveDigest: "sha256:" + active[i+1]})
	}
	return s
}

func invariants(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, string(v.Invariant)+": "+v.Detail)
	}
	return out
}

func TestMonitor(t *testing.T) {
	tests := []struct {
		name    string
		docs    []Doc
		samples []Sample
		want    []string // substrings of the violations, in order
	}{
		{
			name:    "upgrades",
			docs:    []Doc{doc(0, 5, dm("d0", "1.0.0", false)), doc(0, 9, dm("d0", "1.2.0", false))},
			samples: []Sample{sample(0, 5, "d0", "1.0.0"), sample(0, 9, "d0", "1.0.0"), sample(0, 9, "d0", "1.2.0")},
		},
		{
			name:    "applied revision goes back",
			docs:    []Doc{doc(0, 5, dm("d0", "1.0.0", false)), doc(0, 9, dm("d0", "1.0.0", false))},
			samples: []Sample{sample(0, 9, "d0", "1.0.0"), sample(0, 5, "d0", "1.0.0")},
			want:    []string{"applied revision went back from 9 to 5"},
		},
		{
			name:    "a version no document named",
			docs:    []Doc{doc(0, 5, dm("d0", "1.0.0", false))},
			samples: []Sample{sample(0, 5, "d0", "1.3.0")},
			want:    []string{"active 1.3.0 (sha256:1.3.0) was in no desired state up to revision 5"},
		},
		{
			name:    "named only by a later document than the applied one",
			docs:    []Doc{doc(0, 5, dm("d0", "1.0.0", false)), doc(0, 7, dm("d0", "1.3.0", false))},
			samples: []Sample{sample(0, 5, "d0", "1.3.0")},
			want:    []string{"in no desired state up to revision 5"},
		},
		{
			name:    "downgrade without allowDowngrade",
			docs:    []Doc{doc(0, 5, dm("d0", "1.2.0", false)), doc(0, 9, dm("d0", "1.0.0", false))},
			samples: []Sample{sample(0, 5, "d0", "1.2.0"), sample(0, 9, "d0", "1.0.0")},
			want:    []string{"went down from 1.2.0 to 1.0.0 between revisions 5 and 9"},
		},
		{
			name:    "downgrade allowed by a document in between",
			docs:    []Doc{doc(0, 5, dm("d0", "1.2.0", false)), doc(0, 7, dm("d0", "1.0.0", true)), doc(0, 9, dm("d0", "1.0.0", false))},
			samples: []Sample{sample(0, 5, "d0", "1.2.0"), sample(0, 9, "d0", "1.0.0")},
		},
		{
			name:    "downgrade allowed only before the window",
			docs:    []Doc{doc(0, 3, dm("d0", "1.0.0", true)), doc(0, 5, dm("d0", "1.2.0", false)), doc(0, 9, dm("d0", "1.0.0", false))},
			samples: []Sample{sample(0, 5, "d0", "1.2.0"), sample(0, 9, "d0", "1.0.0")},
			want:    []string{"went down"},
		},
		{
			name:    "the deployment left the cluster in between",
			docs:    []Doc{doc(0, 5, dm("d0", "1.2.0", false)), doc(0, 7), doc(0, 9, dm("d0", "1.0.0", false))},
			samples: []Sample{sample(0, 5, "d0", "1.2.0"), sample(0, 9, "d0", "1.0.0")},
		},
		{
			name:    "another model is no downgrade",
			docs:    []Doc{doc(0, 5, dm("d0", "1.2.0", false)), doc(0, 9, DocModel{Deployment: "d0", Model: "n", Version: "1.0.0", Digest: "sha256:n1.0.0"})},
			samples: []Sample{sample(0, 5, "d0", "1.2.0"), {Agent: 0, Applied: 9, Models: []ModelState{{Deployment: "d0", Model: "n", Active: "1.0.0", ActiveDigest: "sha256:n1.0.0"}}}},
		},
		{
			name:    "agents apart",
			docs:    []Doc{doc(0, 5, dm("d0", "1.2.0", false)), doc(1, 6, dm("d0", "1.0.0", false))},
			samples: []Sample{sample(0, 5, "d0", "1.2.0"), sample(1, 6, "d0", "1.0.0")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMonitor()
			for _, d := range tt.docs {
				m.Doc(d)
			}
			var got []Violation
			for _, s := range tt.samples {
				got = append(got, m.Sample(s)...)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("violations %v, want %d like %v", invariants(got), len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if got[i].Invariant != Monotonic || !strings.Contains(got[i].Detail, w) {
					t.Errorf("violation %d = %v, want %q", i, got[i], w)
				}
			}
		})
	}
	if n := NewMonitor(); n.Docs() != 0 {
		t.Error("a new monitor has documents")
	}
}

func TestConverged(t *testing.T) {
	row := func(dep, active, desired, phase, errText string) ModelState {
		ad := ""
		if active != "" {
			ad = "sha256:" + active
		}
		return ModelState{Deployment: dep, Model: "m", Active: active, ActiveDigest: ad, Desired: desired, DesiredDigest: "sha256:" + desired, Phase: phase, Error: errText}
	}
	want := map[string]Want{"d0": {Model: "m", Version: "1.2.0"}, "d1": {Model: "m", Version: "1.0.0"}}
	tests := []struct {
		name string
		rows []ModelState
		want []string
	}{
		{"converged", []ModelState{row("d0", "1.2.0", "1.2.0", "Active", ""), row("d1", "1.0.0", "1.0.0", "Active", "")}, nil},
		{"refused downgrade", []ModelState{row("d0", "1.2.0", "1.2.0", "Active", ""), row("d1", "1.1.0", "1.0.0", "Failed", "downgrade from 1.1.0 to 1.0.0 refused")}, nil},
		{"fetching", []ModelState{row("d0", "1.1.0", "1.2.0", "Fetching", ""), row("d1", "1.0.0", "1.0.0", "Active", "")},
			[]string{`d0: active "1.1.0", want 1.2.0 (phase Fetching`}},
		{"old desired state", []ModelState{row("d0", "1.1.0", "1.1.0", "Active", ""), row("d1", "1.0.0", "1.0.0", "Active", "")},
			[]string{"d0: desired m@1.1.0, want m@1.2.0"}},
		{"missing and extra", []ModelState{row("d0", "1.2.0", "1.2.0", "Active", ""), row("d2", "1.0.0", "1.0.0", "Active", "")},
			[]string{"d1: absent", "d2: still held"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Converged(want, Sample{Models: tt.rows})
			if len(got) != len(tt.want) {
				t.Fatalf("Converged = %q, want %q", got, tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("Converged[%d] = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
	allow := map[string]Want{"d1": {Model: "m", Version: "1.0.0", AllowDowngrade: true}}
	if got := Converged(allow, Sample{Models: []ModelState{row("d1", "1.1.0", "1.0.0", "Failed", "downgrade refused")}}); len(got) != 1 {
		t.Errorf("a refusal where downgrades are allowed converged: %q", got)
	}
}

func TestCheckNotes(t *testing.T) {
	got := CheckNotes(2, []string{"a", "b", "c"}, []string{"a", "c", "c", "x"})
	want := []Violation{
		{Invariant: OutboxTwice, Agent: 2, Detail: `note "c" applied 2 times`},
		{Invariant: OutboxLost, Agent: 2, Detail: `note "b" accepted into the outbox never reached the hub`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CheckNotes = %v, want %v", got, want)
	}
	if got := CheckNotes(0, nil, nil); got != nil {
		t.Errorf("CheckNotes of nothing = %v", got)
	}
}

func TestCheckDuplicateAnswer(t *testing.T) {
	first := []Outcome{{"a", "Applied"}, {"b", "Duplicate"}, {"c", "Refused"}}
	if err := CheckDuplicateAnswer(first, []Outcome{{"a", "Duplicate"}, {"b", "Duplicate"}, {"c", "Refused"}}); err != nil {
		t.Error(err)
	}
	for _, second := range [][]Outcome{
		{{"a", "Applied"}, {"b", "Duplicate"}, {"c", "Refused"}},
		{{"a", "Duplicate"}, {"b", "Duplicate"}},
		{{"a", "Duplicate"}, {"b", "Duplicate"}, {"c", "Duplicate"}},
	} {
		if err := CheckDuplicateAnswer(first, second); err == nil {
			t.Errorf("%v after %v: no error", second, first)
		}
	}
}

func TestCheckLeak(t *testing.T) {
	base := ProcStats{FDs: 20, Threads: 10, Goroutines: 30}
	tests := []struct {
		name string
		now  ProcStats
		want string // in the error; "" for none
	}{
		{"within the slack", ProcStats{FDs: 20 + FDSlack, Threads: 10 + ThreadSlack, Goroutines: 30 + GoroutineSlack}, ""},
		{"fewer", ProcStats{FDs: 5, Threads: 5, Goroutines: 5}, ""},
		{"file descriptors", ProcStats{FDs: 21 + FDSlack, Threads: 10, Goroutines: 30}, "file descriptors"},
		{"threads", ProcStats{FDs: 20, Threads: 11 + ThreadSlack, Goroutines: 30}, "threads"},
		{"goroutines", ProcStats{FDs: 20, Threads: 10, Goroutines: 31 + GoroutineSlack}, "goroutines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckLeak("agent", base, tt.now)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckLeak: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CheckLeak = %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestProcStatsGrowth(t *testing.T) {
	base := ProcStats{FDs: 20, Threads: 10, Goroutines: 30}
	got := ProcStats{FDs: 25, Threads: 8, Goroutines: 31}.Growth(base)
	if want := (ProcStats{FDs: 5, Threads: 0, Goroutines: 1}); got != want {
		t.Errorf("Growth = %+v, want %+v", got, want)
	}
	if got := (ProcStats{FDs: 1, Threads: 9, Goroutines: 3}).Max(ProcStats{FDs: 4, Threads: 2, Goroutines: 3}); got != (ProcStats{FDs: 4, Threads: 9, Goroutines: 3}) {
		t.Errorf("Max = %+v", got)
	}
}

func TestTempFiles(t *testing.T) {
	got := TempFiles([]string{
		"cache/blobs/sha256/ab12", "cache/blobs/sha256/ab12.part", "cache/blobs/sha256/ab12.part.state",
		"cache/blobs/sha256/.ab12.tmp-123", "cache/.index.json.tmp-9", "cache/index.json", "agent.db-wal",
	})
	want := []string{"cache/blobs/sha256/ab12.part", "cache/blobs/sha256/ab12.part.state", "cache/blobs/sha256/.ab12.tmp-123", "cache/.index.json.tmp-9"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("TempFiles = %v, want %v", got, want)
	}
}

func TestShrink(t *testing.T) {
	plan := Generate(1, PlanConfig{Agents: 3, Faults: 60})
	needs := map[int]bool{plan[7].ID: true, plan[23].ID: true, plan[41].ID: true}
	fails := func(steps []Step) bool {
		if steps[len(steps)-1].Kind != Check {
			t.Fatal("the last step was dropped")
		}
		n := 0
		for _, s := range steps {
			if needs[s.ID] {
				n++
			}
		}
		return n == len(needs)
	}
	got, runs := Shrink(plan, fails, 1000)
	if len(got) != 4 || !fails(got) {
		t.Fatalf("Shrink = %v after %d runs, want the 3 needed steps and the check", got, runs)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID <= got[i-1].ID {
			t.Fatalf("Shrink changed the order: %v", got)
		}
	}
	// A budget stops it early, with a plan that still fails.
	got, runs = Shrink(plan, fails, 5)
	if runs != 5 || !fails(got) || len(got) > len(plan) {
		t.Errorf("Shrink with a budget of 5: %d runs, %d steps", runs, len(got))
	}
	// What broke since the last check is found from the window first.
	lastCheck := 0
	for i, s := range plan {
		if s.Kind == Check && i < len(plan)-1 {
			lastCheck = i
		}
	}
	late := map[int]bool{plan[2].ID: true, plan[lastCheck+3].ID: true}
	var first []Step
	got, runs = Shrink(plan, func(steps []Step) bool {
		if first == nil {
			first = steps
		}
		n := 0
		for _, s := range steps {
			if late[s.ID] {
				n++
			}
		}
		return n == len(late)
	}, 1000)
	if len(got) != 3 {
		t.Errorf("Shrink = %v, want the 2 needed steps and the check", got)
	}
	for _, s := range first {
		if s.Kind == Check && s.ID != plan[len(plan)-1].ID {
			t.Errorf("the first candidate holds %s: it should start after the last check", s)
		}
	}
	if first[0].ID != plan[0].ID {
		t.Errorf("the first candidate starts at %s: it should keep the opening steps", first[0])
	}
	// A plan that fails only whole stays whole.
	got, _ = Shrink(plan[:6], func(s []Step) bool { return len(s) == 6 }, 100)
	if len(got) != 6 {
		t.Errorf("Shrink dropped needed steps: %v", got)
	}
}

func TestReportWrite(t *testing.T) {
	r := &Report{Seed: 9, Agents: 5, Steps: 3, Checks: 1, Faults: map[Kind]int{Partition: 2, KillHub: 1}, Operations: map[Kind]int{Push: 4},
		Violations: []Violation{{Invariant: Integrity, Agent: 1, Detail: "blob x holds y"}},
		Shrunk:     []Step{{ID: 4, Kind: Partition, Agent: 1}, {ID: 9, Kind: Check}}, ShrinkRuns: 3}
	var b strings.Builder
	r.Write(&b)
	for _, want := range []string{"faults: 3 (partition 2,", "kill-hub 1", "operations: 4 (push 4,", "integrity: agent 1: blob x holds y",
		"replay with -seed 9 -steps 4,9", "#4 partition agent 1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	if r.TotalFaults() != 3 || r.TotalOperations() != 4 {
		t.Errorf("totals %d %d", r.TotalFaults(), r.TotalOperations())
	}
}
