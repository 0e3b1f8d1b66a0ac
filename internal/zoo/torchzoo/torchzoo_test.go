package torchzoo

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		name      string
		got, want []float32
		bad       int
		worst     int
		maxAbs    float64
	}{
		{name: "equal", got: []float32{1, -2, 0}, want: []float32{1, -2, 0}, worst: 2},
		{name: "within atol near zero", got: []float32{0.00005, 1}, want: []float32{0, 1}, maxAbs: 0.00005},
		{name: "within rtol of a large value", got: []float32{1000.5, 0}, want: []float32{1000, 0}, worst: 1, maxAbs: 0.5},
		{name: "outside", got: []float32{1, 2.01, 3}, want: []float32{1, 2, 3}, bad: 1, worst: 1, maxAbs: 0.01},
		{name: "worst is furthest outside the tolerance, not the largest diff", got: []float32{1001.2, 0.5}, want: []float32{1000, 0},
			bad: 2, worst: 1, maxAbs: 1.2},
		{name: "NaN never passes", got: []float32{1, nan}, want: []float32{1, 1}, bad: 1, worst: 1, maxAbs: math.Inf(1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := Compare(c.got, c.want, 1e-3, 1e-4)
			if err != nil {
				t.Fatal(err)
			}
			absOK := d.MaxAbs == c.maxAbs || math.Abs(d.MaxAbs-c.maxAbs) <= 1e-4*c.maxAbs // float32 inputs
			if d.Bad != c.bad || d.Worst != c.worst || !absOK {
				t.Errorf("Compare = %+v, want %d bad, worst [%d], max |diff| %g", d, c.bad, c.worst, c.maxAbs)
			}
		})
	}
	if _, err := Compare([]float32{1}, []float32{1, 2}, 1e-3, 1e-4); !errors.Is(err, ErrShape) {
		t.Fatalf("lengths differ: %v", err)
	}
}

func TestArchsAreInTheScript(t *testing.T) {
	s := string(Script())
	for _, a := range Archs() {
		if !strings.Contains(s, `"`+a.Name+`": (`) {
			t.Errorf("export.py does not define %q", a.Name)
		}
		if got, err := Lookup(a.Name); err != nil || got.Name != a.Name {
			t.Errorf("Lookup(%q) = %+v, %v", a.Name, got, err)
		}
	}
	if _, err := Lookup("alexnet"); err == nil {
		t.Error("Lookup of an unknown architecture succeeded")
	}
	if len(ScriptHash()) != 64 {
		t.Errorf("ScriptHash() = %q", ScriptHash())
	}
}
