package chaos

import (
	"reflect"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/versions"
)

func TestGenerateIsReproducible(t *testing.T) {
	cfg := PlanConfig{Agents: 5, Faults: 200, CheckEvery: 30}
	a, b := Generate(7, cfg), Generate(7, cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed drew two plans")
	}
	if reflect.DeepEqual(a, Generate(8, cfg)) {
		t.Fatal("two seeds drew the same plan")
	}
}

func TestGenerateShape(t *testing.T) {
	cfg := PlanConfig{Agents: 5, Faults: 1000, CheckEvery: 30}
	plan := Generate(1, cfg)
	c := Count(plan)
	faults := 0
	for _, k := range FaultKinds() {
		faults += c[k]
		if c[k] == 0 {
			t.Errorf("no %s in a plan of 1000 faults", k)
		}
	}
	if faults != cfg.Faults {
		t.Errorf("%d faults, want %d", faults, cfg.Faults)
	}
	for _, k := range OperationKinds() {
		if c[k] == 0 {
			t.Errorf("no %s operation", k)
		}
	}
	if last := plan[len(plan)-1]; last.Kind != Check {
		t.Errorf("the plan ends with %s, want a check", last)
	}
	full := map[int]bool{}
	since := 0
	for i, s := range plan {
		if s.ID != i {
			t.Fatalf("step %d has ID %d", i, s.ID)
		}
		if s.Agent < 0 || s.Agent >= cfg.Agents {
			t.Fatalf("%s: no such agent", s)
		}
		switch s.Kind {
		case DiskFull:
			if full[s.Agent] {
				t.Errorf("%s: the disk is full already", s)
			}
			full[s.Agent] = true
		case FreeDisk:
			if !full[s.Agent] {
				t.Errorf("%s: the disk is not full", s)
			}
			delete(full, s.Agent)
		case Check:
			full = map[int]bool{}
			since = -1
		case Apply:
			if s.Deployment == nil || s.Deployment.Name == "" || s.Deployment.Model == "" {
				t.Errorf("%s: no deployment", s)
			} else if err := versions.Validate(s.Deployment.Version); err != nil {
				t.Errorf("%s: %v", s, err)
			}
		}
		if since++; since > cfg.CheckEvery {
			t.Fatalf("%d steps without a check at %s", since, s)
		}
	}
	if noDisk := Count(Generate(1, PlanConfig{Agents: 3, Faults: 300, NoDiskFull: true})); noDisk[DiskFull] != 0 {
		t.Errorf("NoDiskFull drew %d disk-full faults", noDisk[DiskFull])
	}
}

// Every version a plan pushes is new, and some deployments change model.
func TestGenerateVersionsAndModels(t *testing.T) {
	plan := Generate(3, PlanConfig{Agents: 4, Faults: 500})
	pushed := map[string]bool{}
	model := map[string]string{}
	switched := 0
	for _, s := range plan {
		switch s.Kind {
		case Push:
			if pushed[s.Model+"@"+s.Version] {
				t.Errorf("%s pushed twice", s)
			}
			pushed[s.Model+"@"+s.Version] = true
		case Sign:
			if !pushed[s.Model+"@"+s.Version] {
				t.Errorf("%s: not pushed", s)
			}
		case Apply:
			d := s.Deployment
			if m, ok := model[d.Name]; ok && m != d.Model {
				switched++
			}
			model[d.Name] = d.Model
		}
	}
	if switched == 0 {
		t.Error("no deployment changed model")
	}
}

func TestStepString(t *testing.T) {
	tests := []struct {
		step Step
		want string
	}{
		{Step{ID: 3, Kind: Push, Model: "m", Version: "1.2.0"}, "#3 push m@1.2.0"},
		{Step{ID: 4, Kind: Apply, Deployment: &Deployment{Name: "d1", Model: "n", Version: "^1", Selector: map[string]string{"tier": "edge"}, AllowDowngrade: true}},
			"#4 apply d1 n@^1 {tier=edge} allowDowngrade"},
		{Step{ID: 5, Kind: KillHub, Down: 1500e6, Offline: []int{1, 2}, Gap: 2e6}, "#5 kill-hub down 1.5s restarting agents [1 2] offline (+2ms)"},
		{Step{ID: 6, Kind: Partition, Agent: 2}, "#6 partition agent 2"},
		{Step{ID: 7, Kind: Check}, "#7 check"},
	}
	for _, tt := range tests {
		if got := tt.step.String(); got != tt.want {
			t.Errorf("String = %q, want %q", got, tt.want)
		}
	}
}

func TestSelect(t *testing.T) {
	plan := Generate(1, PlanConfig{Agents: 2, Faults: 20})
	got, err := Select(plan, []int{5, 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != 2 || got[1].ID != 5 || got[2].Kind != Check {
		t.Errorf("Select = %v", got)
	}
	if _, err := Select(plan, []int{99999}); err == nil || !strings.Contains(err.Error(), "99999") {
		t.Errorf("Select of a missing step: %v", err)
	}
}
