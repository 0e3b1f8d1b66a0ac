package drift

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"outpost.dev/outpost/internal/testenv"
)

// The reference checks: every statistic and p-value of this package on
// exact inputs against Debian's SciPy (python3-scipy, 1.10 on bookworm),
// run as /usr/bin/python3 (the Python that sees Debian's packages) on the
// same inputs, written to files. Statistics must agree within 1e-9,
// absolutely below 1 and relatively above; p-values within 1e-9 relatively
// (so a p-value of 1e-80 must agree to 1e-89), or both be below 1e-300.

const systemPython = "/usr/bin/python3"

// scipyScript computes, for each case of the input file, what SciPy says,
// and writes the answers as hexadecimal floats (exact, and able to carry
// inf and nan) to the output file.
const scipyScript = `
import json, sys, warnings
import numpy as np
from scipy import stats, special
from scipy.spatial import distance
from scipy.stats._stats_pythran import _compute_outer_prob_inside_method
warnings.simplefilter("ignore")

def h(x):
    return float(x).hex()

def psi(a, b, eps):
    p = np.asarray(a, float); p = p / p.sum()
    q = np.asarray(b, float); q = q / q.sum()
    both = (p == 0) & (q == 0)
    p = np.maximum(p, eps); q = np.maximum(q, eps)
    t = (p - q) * np.log(p / q)
    return float(np.sum(t[~both]))

out = []
for c in json.load(open(sys.argv[1])):
    k = c["kind"]
    try:
        if k == "ks":
            r = stats.ks_2samp(c["a"], c["b"])
            out.append([h(r.statistic), h(r.pvalue)])
        elif k == "kstwo":
            out.append([h(stats.kstwo.sf(c["d"], c["n"]))])
        elif k == "smirnov":
            out.append([h(special.smirnov(c["n"], c["d"]))])
        elif k == "outer":
            out.append([h(_compute_outer_prob_inside_method(c["m"], c["n"], c["g"], c["h"]))])
        elif k == "gammaincc":
            out.append([h(special.gammaincc(c["ga"], c["x"])), h(special.gammainc(c["ga"], c["x"]))])
        elif k == "chisquare":
            r = stats.chisquare(c["a"], c["b"])
            out.append([h(r.statistic), h(r.pvalue)])
        elif k == "contingency":
            try:
                r = stats.chi2_contingency(np.array([c["a"], c["b"]]))
                out.append([h(r[0]), h(r[1]), h(r[2]), "ok"])
            except ValueError:
                # Zero columns: SciPy refuses; compare with the table
                # without them, and say it refused.
                a = np.array(c["a"], float); b = np.array(c["b"], float)
                keep = (a + b) > 0
                r = stats.chi2_contingency(np.array([a[keep], b[keep]]))
                out.append([h(r[0]), h(r[1]), h(r[2]), "refused"])
        elif k == "psi":
            out.append([h(psi(c["a"], c["b"], c["eps"]))])
        elif k == "wasserstein":
            r = stats.wasserstein_distance(c["a"], c["b"], c.get("aw"), c.get("bw"))
            out.append([h(r)])
        elif k == "js":
            out.append([h(distance.jensenshannon(c["a"], c["b"])), h(distance.jensenshannon(c["a"], c["b"], base=2))])
        else:
            raise ValueError("unknown kind " + k)
    except Exception as e:
        out.append(["error", str(e)])
json.dump(out, open(sys.argv[2], "w"))
`

// refCase is one input to the reference script.
type refCase struct {
	Kind string    `json:"kind"`
	A    []float64 `json:"a,omitempty"`
	B    []float64 `json:"b,omitempty"`
	AW   []float64 `json:"aw,omitempty"`
	BW   []float64 `json:"bw,omitempty"`
	N    int       `json:"n,omitempty"`
	M    int       `json:"m,omitempty"`
	G    int       `json:"g,omitempty"`
	H    int       `json:"h,omitempty"`
	D    float64   `json:"d,omitempty"`
	X    float64   `json:"x,omitempty"`
	GA   float64   `json:"ga,omitempty"`
	Eps  float64   `json:"eps,omitempty"`
	Name string    `json:"-"`
}

// scipyAnswers runs the reference script on cases and returns its answers:
// one row of floats per case, and the strings of each row that are not
// floats (a flag, or "error" and SciPy's message).
func scipyAnswers(t *testing.T, cases []refCase) (rows [][]float64, flags [][]string) {
	t.Helper()
	if _, err := os.Stat(systemPython); err != nil {
		testenv.MissingPeer(t, "no "+systemPython+": install python3-scipy (scripts/debian-deps.sh)")
		return nil, nil
	}
	if err := exec.Command(systemPython, "-c", "import scipy.stats, scipy.spatial").Run(); err != nil {
		testenv.MissingPeer(t, "Debian's SciPy is missing: install python3-scipy (scripts/debian-deps.sh)")
		return nil, nil
	}
	dir := t.TempDir()
	script, in, out := filepath.Join(dir, "ref.py"), filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json")
	data, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(scipyScript), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(systemPython, script, in, out).CombinedOutput(); err != nil {
		t.Fatalf("reference script: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var answers [][]string
	if err := json.Unmarshal(raw, &answers); err != nil {
		t.Fatal(err)
	}
	if len(answers) != len(cases) {
		t.Fatalf("%d answers for %d cases", len(answers), len(cases))
	}
	rows = make([][]float64, len(answers))
	flags = make([][]string, len(answers))
	for i, a := range answers {
		if len(a) > 0 && a[0] == "error" {
			flags[i] = a
			continue
		}
		for _, s := range a {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				flags[i] = append(flags[i], s)
				continue
			}
			rows[i] = append(rows[i], f)
		}
	}
	return rows, flags
}

// statClose reports whether a statistic agrees with SciPy's: within 1e-9,
// absolutely below 1 and relatively above.
func statClose(got, want float64) bool {
	if math.IsInf(want, 0) || math.IsNaN(want) {
		return got == want || math.IsNaN(got) && math.IsNaN(want)
	}
	return math.Abs(got-want) <= 1e-9*max(1, math.Abs(want))
}

// pClose reports whether a p-value agrees with SciPy's: within 1e-9
// relatively, or both below 1e-300.
func pClose(got, want float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	if got < 1e-300 && want < 1e-300 {
		return true
	}
	return math.Abs(got-want) <= 1e-9*math.Abs(want)
}

// relDiff returns |got-want| relative to |want| (absolute when want is 0).
func relDiff(got, want float64) float64 {
	if want == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-want) / math.Abs(want)
}

// worst tracks the largest difference seen per kind, for the log.
type worst struct {
	mu sync.Mutex
	m  map[string]string
	d  map[string]float64
}

func (w *worst) note(kind, what string, got, want float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m, w.d = map[string]string{}, map[string]float64{}
	}
	d := relDiff(got, want)
	key := kind + " " + what
	if d >= w.d[key] {
		w.d[key] = d
		w.m[key] = fmt.Sprintf("%s: largest relative difference %.3g (got %.17g, SciPy %.17g)", key, d, got, want)
	}
}

func normals(r *rand.Rand, n int, mean, sd float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = mean + sd*r.NormFloat64()
	}
	return s
}

// rounded returns s rounded to multiples of step: samples with ties.
func rounded(s []float64, step float64) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = math.Round(x/step) * step
	}
	return out
}

func TestAgainstSciPy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var cases []refCase
	add := func(c refCase) { cases = append(cases, c) }

	// Two-sample KS: equal and unequal sizes, 5 to 20,000, ties, shifts
	// from none to large (p-values down to 1e-300 and 0), both methods.
	sizes := [][2]int{{5, 5}, {5, 7}, {6, 9}, {10, 10}, {13, 29}, {20, 30}, {50, 50}, {100, 80},
		{250, 400}, {500, 500}, {999, 1000}, {1200, 1000}, {3000, 10000}, {2000, 2000}, {7919, 7907},
		{10000, 10000}, {10000, 9999}, {10001, 50}, {20000, 5}, {12000, 11000}, {20000, 20000},
		{15000, 8000}, {200, 20000}, {10001, 10001}}
	for _, sz := range sizes {
		shifts := []float64{0, 0.05, 0.2, 0.6, 1.5}
		if max(sz[0], sz[1]) >= 5000 {
			shifts = []float64{0.03, 0.3} // large samples: moderate and tiny p-values
		}
		for _, sh := range shifts {
			a, b := normals(r, sz[0], 0, 1), normals(r, sz[1], sh, 1)
			add(refCase{Kind: "ks", A: a, B: b, Name: fmt.Sprintf("n=%d,%d shift %.2f", sz[0], sz[1], sh)})
			if sz[0] <= 3000 {
				add(refCase{Kind: "ks", A: rounded(a, 0.5), B: rounded(b, 0.5), Name: fmt.Sprintf("ties n=%d,%d shift %.2f", sz[0], sz[1], sh)})
			}
		}
	}
	add(refCase{Kind: "ks", A: []float64{1, 1, 1, 1, 1}, B: []float64{1, 1, 1}, Name: "all equal"})
	add(refCase{Kind: "ks", A: []float64{1, 2, 3, 4, 5}, B: []float64{6, 7, 8, 9, 10}, Name: "disjoint"})
	add(refCase{Kind: "ks", A: rounded(normals(r, 20000, 0, 1), 1), B: rounded(normals(r, 15000, 0.1, 1), 1), Name: "asymptotic with heavy ties"})

	// The one-sample distribution behind the asymptotic p-value, across
	// every branch of kolmogn (Ruben–Gambino, Durbin, Pomeranz, Pelz–Good,
	// Smirnov), and the one-sided Smirnov distribution.
	for _, n := range []int{1, 2, 3, 5, 8, 10, 33, 50, 100, 140, 141, 200, 500, 1000, 2500, 10000, 100001} {
		ds := []float64{0.0001, 0.001, 0.003, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.45, 0.5, 0.6, 0.9, 0.999,
			0.5 / float64(n), 0.7 / float64(n), 1 / float64(n), 1.5 / float64(n), 1 - 1/float64(n), 1 - 0.5/float64(n)}
		zs := []float64{0.3, 0.6, 0.85, 1.2, 1.5, 2, 3, 5, 8, 13}
		if n > 10000 {
			// Pelz–Good beyond n = 100,000; SciPy's Smirnov takes long here,
			// and n = 10,000 covers it.
			ds, zs = []float64{0.003}, []float64{0.6, 1.2}
		}
		for _, z := range zs {
			ds = append(ds, z/math.Sqrt(float64(n)))
		}
		for _, d := range ds {
			if d >= 1 || d <= 0 {
				continue
			}
			add(refCase{Kind: "kstwo", N: n, D: d, Name: fmt.Sprintf("n=%d d=%g", n, d)})
			if n <= 10000 {
				add(refCase{Kind: "smirnov", N: n, D: d, Name: fmt.Sprintf("n=%d d=%g", n, d)})
			}
		}
	}
	// The exact unequal-size path count, directly.
	for _, mn := range [][2]int{{7, 5}, {10, 3}, {100, 37}, {120, 80}, {1000, 999}, {5000, 3000}} {
		m, n := mn[0], mn[1]
		g := int(gcd(int64(m), int64(n)))
		lcm := m / g * n
		for _, f := range []float64{0.01, 0.05, 0.1, 0.3, 0.6, 0.95} {
			h := max(1, int(f*float64(lcm)))
			add(refCase{Kind: "outer", M: m, N: n, G: g, H: h, Name: fmt.Sprintf("m=%d n=%d h=%d", m, n, h)})
		}
	}

	// The incomplete gamma function, small to large a, both sides of a.
	for _, a := range []float64{0.5, 1, 1.5, 2.5, 4.5, 9.5, 10, 12.5, 50, 99.5, 500, 2499.5, 20000} {
		for _, f := range []float64{1e-6, 0.01, 0.3, 0.7, 0.95, 0.999, 1, 1.001, 1.05, 1.3, 2, 5, 20} {
			x := a * f
			add(refCase{Kind: "gammaincc", GA: a, X: x, Name: fmt.Sprintf("a=%g x=%g", a, x)})
		}
		for _, x := range []float64{0.001, 0.5, 1, 3, 30, 300, 1400} {
			add(refCase{Kind: "gammaincc", GA: a, X: x, Name: fmt.Sprintf("a=%g x=%g", a, x)})
		}
	}

	// χ² goodness of fit and homogeneity: small and large tables, zero
	// counts, 2×2 tables (Yates), extreme p-values.
	multinomial := func(n int, probs []float64) []float64 {
		c := make([]float64, len(probs))
		for range n {
			u, acc := r.Float64(), 0.0
			for i, p := range probs {
				acc += p
				if u < acc || i == len(probs)-1 {
					c[i]++
					break
				}
			}
		}
		return c
	}
	uniform := func(k int) []float64 {
		p := make([]float64, k)
		for i := range p {
			p[i] = 1 / float64(k)
		}
		return p
	}
	tilted := func(k int, s float64) []float64 {
		p := make([]float64, k)
		sum := 0.0
		for i := range p {
			p[i] = math.Exp(s * float64(i) / float64(k))
			sum += p[i]
		}
		for i := range p {
			p[i] /= sum
		}
		return p
	}
	for _, k := range []int{2, 3, 10, 40, 1000} {
		for _, n := range []int{30, 500, 20000} {
			for _, s := range []float64{0, 0.3, 3} {
				obs := multinomial(n, tilted(k, s))
				exp := uniform(k)
				for i := range exp {
					exp[i] *= float64(n)
				}
				add(refCase{Kind: "chisquare", A: obs, B: exp, Name: fmt.Sprintf("k=%d n=%d tilt %g", k, n, s)})
				other := multinomial(n/2+7, uniform(k))
				add(refCase{Kind: "contingency", A: obs, B: other, Name: fmt.Sprintf("k=%d n=%d tilt %g", k, n, s)})
				add(refCase{Kind: "psi", A: other, B: obs, Eps: PSIEpsilon, Name: fmt.Sprintf("k=%d n=%d tilt %g", k, n, s)})
				add(refCase{Kind: "js", A: other, B: obs, Name: fmt.Sprintf("k=%d n=%d tilt %g", k, n, s)})
			}
		}
	}
	tables := [][2][]float64{
		{{10, 20}, {30, 40}}, {{1, 0}, {0, 1}}, {{5, 5}, {5, 5}}, {{5, 5.2}, {5, 5}}, {{12, 3}, {4, 9}},
		{{100, 0, 3}, {90, 0, 10}}, {{0, 0, 7, 1}, {0, 3, 0, 0}}, {{0, 4}, {0, 9}}, {{1000, 1}, {1, 1000}},
		{{3, 0, 0}, {5, 0, 0}}, {{4000, 1000, 3}, {1000, 4000, 9}}, {{0, 10, 0, 20}, {0, 30, 0, 40}},
	}
	for _, tb := range tables {
		add(refCase{Kind: "contingency", A: tb[0], B: tb[1], Name: fmt.Sprintf("%v", tb)})
		add(refCase{Kind: "psi", A: tb[0], B: tb[1], Eps: PSIEpsilon, Name: fmt.Sprintf("%v", tb)})
		add(refCase{Kind: "js", A: tb[0], B: tb[1], Name: fmt.Sprintf("%v", tb)})
	}
	add(refCase{Kind: "chisquare", A: []float64{0, 0, 30}, B: []float64{10, 10, 10}, Name: "zero observed"})
	add(refCase{Kind: "chisquare", A: []float64{4000, 0}, B: []float64{2000, 2000}, Name: "p = 0"})
	add(refCase{Kind: "chisquare", A: []float64{1300, 700}, B: []float64{1000, 1000}, Name: "tiny p"})

	// Wasserstein-1, with and without weights, ties, sizes 1 to 20,000.
	for _, sz := range [][2]int{{1, 1}, {1, 5}, {5, 7}, {50, 50}, {300, 1000}, {20000, 15000}} {
		for _, sh := range []float64{0, 0.5, 3} {
			a, b := normals(r, sz[0], 0, 1), normals(r, sz[1], sh, 2)
			add(refCase{Kind: "wasserstein", A: a, B: b, Name: fmt.Sprintf("n=%d,%d shift %g", sz[0], sz[1], sh)})
			add(refCase{Kind: "wasserstein", A: rounded(a, 0.5), B: rounded(b, 0.5), Name: fmt.Sprintf("ties n=%d,%d shift %g", sz[0], sz[1], sh)})
			aw, bw := make([]float64, len(a)), make([]float64, len(b))
			for i := range aw {
				aw[i] = float64(r.IntN(5))
			}
			aw[0] = 1
			for i := range bw {
				bw[i] = r.Float64() * 3
			}
			add(refCase{Kind: "wasserstein", A: rounded(a, 0.25), B: b, AW: aw, BW: bw, Name: fmt.Sprintf("weighted n=%d,%d shift %g", sz[0], sz[1], sh)})
		}
	}

	rows, flags := scipyAnswers(t, cases)
	if rows == nil && flags == nil {
		return
	}
	var w worst
	for i, c := range cases {
		want, flag := rows[i], flags[i]
		if len(flag) > 0 && flag[0] == "error" {
			t.Errorf("%s %s: SciPy failed: %v", c.Kind, c.Name, flag)
			continue
		}
		checkStat := func(what string, got, want float64) {
			t.Helper()
			w.note(c.Kind, what, got, want)
			if !statClose(got, want) {
				t.Errorf("%s %s: %s %.17g, SciPy %.17g", c.Kind, c.Name, what, got, want)
			}
		}
		checkP := func(what string, got, want float64) {
			t.Helper()
			w.note(c.Kind, what, got, want)
			if !pClose(got, want) {
				t.Errorf("%s %s: %s %.17g, SciPy %.17g (relative difference %.3g)", c.Kind, c.Name, what, got, want, relDiff(got, want))
			}
		}
		switch c.Kind {
		case "ks":
			res, err := KolmogorovSmirnov(c.A, c.B)
			if err != nil {
				t.Errorf("ks %s: %v", c.Name, err)
				continue
			}
			checkStat("statistic", res.Statistic, want[0])
			checkP("p-value", res.PValue, want[1])
		case "kstwo":
			checkP("sf", KolmogorovSF(c.N, c.D), want[0])
		case "smirnov":
			checkP("sf", smirnovSF(c.N, c.D), want[0])
		case "outer":
			checkP("probability", ksOuterProbInside(int64(c.M), int64(c.N), int64(c.G), int64(c.H)), want[0])
		case "gammaincc":
			checkP("Q", GammaQ(c.GA, c.X), want[0])
			checkP("P", GammaP(c.GA, c.X), want[1])
		case "chisquare":
			res, err := ChiSquare(c.A, c.B)
			if err != nil {
				t.Errorf("chisquare %s: %v", c.Name, err)
				continue
			}
			checkStat("statistic", res.Statistic, want[0])
			checkP("p-value", res.PValue, want[1])
		case "contingency":
			res, err := ChiSquareHomogeneity(c.A, c.B)
			if err != nil {
				t.Errorf("contingency %s: %v", c.Name, err)
				continue
			}
			checkStat("statistic", res.Statistic, want[0])
			checkP("p-value", res.PValue, want[1])
			if float64(res.DF) != want[2] {
				t.Errorf("contingency %s: %d degrees of freedom, SciPy %v", c.Name, res.DF, want[2])
			}
			zero := false
			for j := range c.A {
				zero = zero || c.A[j]+c.B[j] == 0
			}
			if refused := flag[0] == "refused"; refused != zero {
				t.Errorf("contingency %s: SciPy refused the table: %v, but it has a zero column: %v", c.Name, refused, zero)
			}
		case "psi":
			got, err := PSI(c.A, c.B)
			if err != nil {
				t.Errorf("psi %s: %v", c.Name, err)
				continue
			}
			checkStat("psi", got, want[0])
		case "js":
			got, err := JensenShannon(c.A, c.B)
			if err != nil {
				t.Errorf("js %s: %v", c.Name, err)
				continue
			}
			checkStat("distance", got, want[0])
			got2, err := JensenShannonBase(c.A, c.B, 2)
			if err != nil {
				t.Errorf("js %s: %v", c.Name, err)
				continue
			}
			checkStat("distance base 2", got2, want[1])
		case "wasserstein":
			got, err := WassersteinWeighted(c.A, c.AW, c.B, c.BW)
			if err != nil {
				t.Errorf("wasserstein %s: %v", c.Name, err)
				continue
			}
			checkStat("distance", got, want[0])
		}
	}
	for _, s := range w.m {
		t.Log(s)
	}
}
