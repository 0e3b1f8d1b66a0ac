package compress

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
)

func TestMarkPareto(t *testing.T) {
	c := func(name string, bytes int, acc float64, within bool) Candidate {
		return Candidate{Name: name, Bytes: bytes, Accuracy: acc, Within: within}
	}
	cs := []Candidate{
		c("full", 1000, 0.85, true),
		c("fp16", 500, 0.85, true),    // dominates full: smaller, as accurate
		c("int8", 250, 0.848, true),   // smaller, less accurate: on the front
		c("int8-p", 250, 0.846, true), // same size as int8, less accurate: dominated
		c("tiny", 100, 0.80, false),   // outside the budget: never on the front
		c("student", 90, 0.84, true),  // smallest within budget
		{Name: "x", Skipped: "no"},    // skipped
		c("twin", 500, 0.85, true),    // equal to fp16: neither dominates
	}
	MarkPareto(cs)
	want := map[string]bool{"fp16": true, "int8": true, "student": true, "twin": true}
	for _, x := range cs {
		if x.Pareto != want[x.Name] {
			t.Errorf("%s: Pareto %v, want %v", x.Name, x.Pareto, want[x.Name])
		}
	}
}

// A search over the zoo's MLP or CNN makes every recipe's variant,
// measures it, and keeps the budget; over the CNN, unstructured pruning is
// skipped with the reason.
func TestSearch(t *testing.T) {
	tr, te, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	recipes, err := SelectRecipes("fp16,int8,pruned50-int8")
	if err != nil {
		t.Fatal(err)
	}
	if raceEnabled {
		recipes = recipes[:2]
	}
	ctx := context.Background()
	for _, name := range []string{"mlp", "cnn"} {
		t.Run(name, func(t *testing.T) {
			m, _ := zooModel(t, name)
			var seen []string
			cs, err := Search(ctx, m, recipes, Data{Train: tr, Eval: te, Calibration: 256}, 1.0, func(i, n int, r string) { seen = append(seen, r) })
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != len(recipes)+1 || cs[0].Name != "full" || len(seen) != len(recipes) {
				t.Fatalf("%d candidates, progress %v", len(cs), seen)
			}
			for _, c := range cs {
				t.Logf("%-14s %7d bytes %.3fx acc %.1f%% drop %+.2f within %v pareto %v lat1 %v lat32 %v mem %d ops %v %s",
					c.Name, c.Bytes, c.Ratio, 100*c.Accuracy, c.Drop, c.Within, c.Pareto, c.Latency1, c.Latency32, c.Memory, c.Ops, c.Skipped)
				if c.Skipped != "" {
					t.Errorf("%s skipped: %s", c.Name, c.Skipped)
					continue
				}
				if c.Accuracy < 0.8 || c.Latency1 <= 0 || c.Latency32 <= 0 || len(c.Ops) == 0 {
					t.Errorf("%s measured %+v", c.Name, c)
				}
				if c.Within != (c.Drop <= 1.0) {
					t.Errorf("%s: drop %.2f, within %v", c.Name, c.Drop, c.Within)
				}
			}
			if cs[1].Ratio > 0.6 || cs[2].Ratio > 0.35 {
				t.Errorf("fp16 %.3fx, int8 %.3fx the size", cs[1].Ratio, cs[2].Ratio)
			}
		})
	}
	if _, err := SelectRecipes("int8,bogus"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("an unknown recipe: %v", err)
	}
	sparse, err := SelectRecipes("sparse80")
	if err != nil {
		t.Fatal(err)
	}
	cnn, _ := zooModel(t, "cnn")
	cs, err := Search(ctx, cnn, sparse, Data{Train: tr, Eval: te.Slice(0, 10)}, 1, nil)
	if err != nil || !strings.Contains(cs[1].Skipped, "unstructured pruning is for MLPs only") {
		t.Errorf("sparse80 of the CNN: %+v, %v", cs, err)
	}
	m, _ := zooModel(t, "mlp")
	if _, err := Search(ctx, m, recipes, Data{Train: tr}, 1, nil); err == nil {
		t.Error("a search without evaluation data ran")
	}
}

// A student of the sizes a user gives is a recipe like the others.
func TestStudentRecipe(t *testing.T) {
	for _, bad := range [][]int{nil, {0}, {32, -1}} {
		if _, err := StudentRecipe(bad); err == nil {
			t.Errorf("student of hidden sizes %v accepted", bad)
		}
	}
	r, err := StudentRecipe([]int{24, 12})
	if err != nil || r.Name != "student-24-12" || r.Params["hidden"] != "24,12" {
		t.Fatalf("%+v, %v", r, err)
	}
	if raceEnabled {
		t.Skip("distils for seconds; make test runs it without -race")
	}
	tr, te, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := zooModel(t, "mlp")
	cs, err := Search(context.Background(), m, []Recipe{r}, Data{Train: tr, Eval: te}, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cs[1]
	if s.Skipped != "" || s.Ratio > 0.12 || s.Accuracy < 0.75 {
		t.Fatalf("student-24-12: %+v", s)
	}
	t.Logf("student-24-12: %.3fx the size, accuracy %.1f%% (%+.2f points)", s.Ratio, 100*s.Accuracy, -s.Drop)
}

func TestHoldOut(t *testing.T) {
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	a, b, err := HoldOut(tr, 0.2)
	if err != nil || a.Len() != 4800 || b.Len() != 1200 {
		t.Fatalf("HoldOut(6000, 0.2) = %v, %v, %v", a, b, err)
	}
	x, y := make([]float32, 784), make([]float32, 784)
	if lb, lt := b.Sample(0, x), tr.Sample(4800, y); lb != lt || x[300] != y[300] {
		t.Error("the held-out samples are not the last ones")
	}
	for _, share := range []float64{0, 1, 0.00001} {
		if _, _, err := HoldOut(tr, share); err == nil {
			t.Errorf("holding out %v of 6000 samples accepted", share)
		}
	}
}

// The fitted student takes the widest rung of its source's ladder whose
// int8 file fits, measured: the variant it makes is within the size, and
// a size nothing fits is an error that says so.
func TestFittedStudent(t *testing.T) {
	tr, te, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := Data{Train: tr, Eval: te}
	for _, tc := range []struct {
		model string
		ratio float64
		want  []int
	}{
		{"cnn", 0.2, []int{8, 8}},  // conv2 halved, conv1 kept
		{"cnn", 0.1, []int{8, 2}},  // conv2 narrowed 6 times
		{"cnn", 0.09, []int{8, 1}}, // the narrowest: 2,985 bytes
		{"mlp", 0.1, []int{85}},    // 256 / 3
		{"mlp", 0.02, []int{16}},   // 256 / 16
		{"mlp", 0.01, []int{8}},    // 256 / 32: 7,742 bytes
		{"mlp", 0.009, nil},
		{"cnn", 0.07, nil},
	} {
		m, b := zooModel(t, tc.model)
		sm, err := readSource(b)
		if err != nil {
			t.Fatal(err)
		}
		limit := int(tc.ratio * float64(len(b)))
		got, err := fit(ctx, m.GetGraph().GetName(), sm, limit, d)
		if tc.want == nil {
			if want := fmt.Sprintf("no student fits in %d bytes", limit); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s at %.3fx: sizes %v, %v; want an error saying %q", tc.model, tc.ratio, got, err, want)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s at %.3fx: sizes %v, %v; want %v", tc.model, tc.ratio, got, err, tc.want)
		}
	}
	m, _ := zooModel(t, "cnn")

	if raceEnabled {
		t.Skip("distils for seconds; make test runs it without -race")
	}
	rs, err := SelectRecipes("student10-int8")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Search(ctx, m, rs, d, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cs[1]
	if s.Skipped != "" || s.Ratio > 0.1 || s.Accuracy < 0.7 || !slices.Contains(s.Ops, "QuantizeLinear") {
		t.Fatalf("student10-int8 of the CNN: %+v", s)
	}
	sv, err := onnx.Unmarshal(s.Model)
	if err != nil {
		t.Fatal(err)
	}
	arch := ""
	for _, p := range sv.GetMetadataProps() {
		if p.GetKey() == "outpost.train.arch" {
			arch = p.GetValue()
		}
	}
	if arch != "cnn-8-2-10" {
		t.Errorf("student10-int8 of the CNN is %q, want cnn-8-2-10", arch)
	}
	t.Logf("student10-int8 of the CNN: %d bytes, %.3fx, accuracy %.1f%% (%+.2f points)", s.Bytes, s.Ratio, 100*s.Accuracy, -s.Drop)
}
