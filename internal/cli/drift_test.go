package cli

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"outpost.dev/outpost/internal/hub/hubtest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/driftref"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// fashionTest is the embedded Fashion-MNIST test subset's images (1000).
const fashionTest = "../dataset/testdata/fashion-test-images-idx3-ubyte.gz"

// registryHub serves a hub with its OCI registry over plain HTTP and
// returns the arguments that point the CLI at it with the admin token.
func registryHub(t *testing.T) []string {
	t.Helper()
	srv, admin := hubtest.Build(t)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return []string{"--hub", ts.URL, "--token", admin}
}

// zooDir writes the zoo model called name into a new folder.
func zooDir(t *testing.T, name string) string {
	t.Helper()
	m, b, err := zoo.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, m.File), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeNPY writes float32 samples of width values as a .npy file.
func writeNPY(t *testing.T, path string, width int, vals []float32) {
	t.Helper()
	h := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", len(vals)/width, width)
	for (10+len(h)+1)%64 != 0 {
		h += " "
	}
	h += "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(h)))
	b.WriteString(h)
	_ = binary.Write(&b, binary.LittleEndian, vals)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fashionNPY writes the first n test images, scaled to [0, 1], as float32.
func fashionNPY(t *testing.T, n int) string {
	t.Helper()
	d, err := driftref.ReadPath(fashionTest, 0)
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]float32, n*784)
	for i := range vals {
		vals[i] = float32(d.Values[i]) / 255
	}
	p := filepath.Join(t.TempDir(), "ref.npy")
	writeNPY(t, p, 784, vals)
	return p
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("outpost %s = %d\nstdout %s\nstderr %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func failCLI(t *testing.T, want string, args ...string) {
	t.Helper()
	out, errOut, code := runCLI(t, args...)
	if code == 0 || !strings.Contains(errOut, want) {
		t.Fatalf("outpost %s = %d, stderr %q (stdout %q), want an error saying %q", strings.Join(args, " "), code, errOut, out, want)
	}
}

// shownProfile runs 'model show -o json' and returns its profile.
func shownProfile(t *testing.T, hubArgs []string, ref string) *profileSummary {
	t.Helper()
	out := mustCLI(t, append(hubArgs, "model", "show", ref, "-o", "json")...)
	var show struct {
		Profile *profileSummary `json:"profile"`
	}
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return show.Profile
}

func TestModelPushWithReference(t *testing.T) {
	h := registryHub(t)
	dir := zooDir(t, "mlp")
	out := mustCLI(t, append(h, "model", "push", dir, "--name", "fashion", "--version", "1.0.0", "--reference", fashionTest)...)
	if !strings.Contains(out, "with its reference profile (1000 samples, 21 features)") {
		t.Fatalf("push output %q", out)
	}
	show := mustCLI(t, append(h, "model", "show", "fashion@1.0.0")...)
	for _, re := range []string{
		`Reference profile:\s+sha256:[0-9a-f]{64}, attached`,
		`Samples:\s+1000\n`,
		`Input:\s+\[784\] image: in\.mean, in\.std … in\.proj\[7\] \(10\)\n`,
		`Output:\s+\[10\] probabilities: out\.p\[0\], out\.p\[1\] … out\.class \(11\)\n`,
	} {
		if !regexp.MustCompile(re).MatchString(show) {
			t.Errorf("show lacks %s:\n%s", re, show)
		}
	}
	p := shownProfile(t, h, "fashion@1.0.0")
	if p == nil || p.Samples != 1000 || len(p.Features) != 21 || p.Outputs != drift.OutputsProbabilities || p.Error != "" {
		t.Fatalf("profile %+v", p)
	}

	// The same files and data again: nothing changes.
	mustCLI(t, append(h, "model", "push", dir, "--name", "fashion", "--version", "1.0.0", "--reference", fashionTest)...)
	if again := shownProfile(t, h, "fashion@1.0.0"); again.Digest != p.Digest {
		t.Fatalf("profile changed from %s to %s", p.Digest, again.Digest)
	}
	// Other reference data for the same version: refused, pointing at --replace.
	failCLI(t, "replace it with 'outpost drift profile fashion@1.0.0 DATA --replace'",
		append(h, "model", "push", dir, "--name", "fashion", "--version", "1.0.0", "--reference", fashionNPY(t, 50))...)
	// Reference data of another shape: refused before anything is sent.
	csv := filepath.Join(t.TempDir(), "wrong.csv")
	if err := os.WriteFile(csv, []byte("a,b,c\n1,2,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failCLI(t, `input "input" takes samples of shape [784] (784 values); the data's have 3`,
		append(h, "model", "push", dir, "--name", "fashion", "--version", "2.0.0", "--reference", csv)...)
	failCLI(t, "manifest 2.0.0 unknown", append(h, "model", "show", "fashion@2.0.0")...)
	// A folder without a model has nothing to profile.
	failCLI(t, "has no .onnx file", append(h, "model", "push", t.TempDir(), "--name", "fashion", "--version", "3.0.0", "--reference", fashionTest)...)
}

func TestDriftProfileCommand(t *testing.T) {
	h := registryHub(t)
	mustCLI(t, append(h, "model", "push", zooDir(t, "mlp"), "--name", "fashion", "--version", "1.0.0")...)
	if show := mustCLI(t, append(h, "model", "show", "fashion@1.0.0")...); !regexp.MustCompile(`Reference profile:\s+none`).MatchString(show) {
		t.Fatalf("show without a profile:\n%s", show)
	}
	out := mustCLI(t, append(h, "drift", "profile", "fashion@1.0.0", fashionTest)...)
	if !strings.HasPrefix(out, "attached the reference profile of fashion@1.0.0 (1000 samples, 21 features) sha256:") {
		t.Fatalf("profile output %q", out)
	}
	first := shownProfile(t, h, "fashion@1.0.0")
	// The same again: a no-op.
	mustCLI(t, append(h, "drift", "profile", "fashion@1.0.0", fashionTest)...)
	if p := shownProfile(t, h, "fashion@1.0.0"); p.Digest != first.Digest {
		t.Fatal("the same profile again changed it")
	}
	// Another one: refused unless replaced.
	other := fashionNPY(t, 100)
	failCLI(t, "fashion@1.0.0 already has another reference profile ("+string(first.Digest)+"): pass --replace to replace it",
		append(h, "drift", "profile", "fashion@1.0.0", other)...)
	if p := shownProfile(t, h, "fashion@1.0.0"); p.Digest != first.Digest || p.Samples != 1000 {
		t.Fatal("a refused profile changed the version's")
	}
	mustCLI(t, append(h, "drift", "profile", "fashion@1.0.0", other, "--replace")...)
	if p := shownProfile(t, h, "fashion@1.0.0"); p.Digest == first.Digest || p.Samples != 100 {
		t.Fatalf("after --replace: %+v", p)
	}

	bad := filepath.Join(t.TempDir(), "bad.npy")
	if err := os.WriteFile(bad, []byte("\x93NUMPY\x01\x00\x04\x00{} \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notModel := t.TempDir()
	if err := os.WriteFile(filepath.Join(notModel, "weights.bin"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, append(h, "model", "push", notModel, "--name", "blob", "--version", "1.0.0")...)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"malformed data", []string{"fashion@1.0.0", bad}, `malformed .npy file: header: no "descr"`},
		{"missing data", []string{"fashion@1.0.0", filepath.Join(t.TempDir(), "none.npy")}, "no such file"},
		{"no version", []string{"fashion", fashionTest}, `"fashion": want NAME@VERSION`},
		{"unknown version", []string{"fashion@9.9.9", fashionTest}, "resolve fashion@9.9.9"},
		{"no model file", []string{"blob@1.0.0", fashionTest}, "blob@1.0.0 has 0 ONNX files"},
		{"bad outputs", []string{"fashion@1.0.0", fashionTest, "--outputs", "scores"}, `outputs "scores"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failCLI(t, tt.want, append(append(h, "drift", "profile"), tt.args...)...)
		})
	}
	if p := shownProfile(t, h, "fashion@1.0.0"); p.Samples != 100 {
		t.Fatal("bad input changed the profile")
	}
}

// compareData returns two data sets of a continuous column x (whose mean
// shifts in the current one) and an integer column k in 0…4.
func compareData() (ref, cur [][2]float64) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 400 {
		row := [2]float64{rng.NormFloat64(), float64(rng.IntN(5))}
		if i < 250 {
			ref = append(ref, row)
		} else {
			row[0] += 0.6
			cur = append(cur, row)
		}
	}
	return ref, cur
}

func writeCSV(t *testing.T, path string, header bool, rows [][2]float64) {
	t.Helper()
	var b strings.Builder
	if header {
		b.WriteString("x,k\n")
	}
	for _, r := range rows {
		b.WriteString(strconv.FormatFloat(r[0], 'g', -1, 64) + "," + strconv.FormatFloat(r[1], 'g', -1, 64) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDriftCompare(t *testing.T) {
	ref, cur := compareData()
	dir := t.TempDir()
	refCSV, curCSV := filepath.Join(dir, "ref.csv"), filepath.Join(dir, "cur.csv")
	writeCSV(t, refCSV, true, ref)
	writeCSV(t, curCSV, false, cur)

	out := mustCLI(t, "drift", "compare", refCSV, curCSV, "-o", "json")
	var c driftref.Comparison
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(c.Columns) != 2 || c.Columns[0].Name != "x" || c.Columns[1].Name != "k" || c.Tests != 4 || !c.Drifted {
		t.Fatalf("comparison %+v", c)
	}
	// Every statistic is internal/drift's on the columns.
	col := func(rows [][2]float64, j int) []float64 {
		out := make([]float64, len(rows))
		for i, r := range rows {
			out[i] = r[j]
		}
		return out
	}
	ks, _ := drift.KolmogorovSmirnov(col(ref, 0), col(cur, 0))
	wd, _ := drift.Wasserstein(col(ref, 0), col(cur, 0))
	count := func(xs []float64) []float64 {
		c := make([]float64, 5)
		for _, x := range xs {
			c[int(x)]++
		}
		return c
	}
	chi, _ := drift.ChiSquareHomogeneity(count(col(ref, 1)), count(col(cur, 1)))
	psi, _ := drift.PSI(count(col(ref, 1)), count(col(cur, 1)))
	js, _ := drift.JensenShannon(count(col(ref, 1)), count(col(cur, 1)))
	got := map[string]driftref.Score{}
	for _, cl := range c.Columns {
		for _, s := range cl.Scores {
			got[cl.Name+" "+string(s.Test)] = s
		}
	}
	for key, want := range map[string]float64{"x ks": ks.Statistic, "x wasserstein": wd, "k chi-square": chi.Statistic, "k psi": psi, "k jensen-shannon": js} {
		if got[key].Statistic != want {
			t.Errorf("%s = %v, want %v", key, got[key].Statistic, want)
		}
	}
	if p := got["x ks"]; *p.PValue != ks.PValue || *p.Corrected != min(1, 4*ks.PValue) || !p.Drifted {
		t.Errorf("x ks p-values %v %v drifted %v, want %v", *p.PValue, *p.Corrected, p.Drifted, ks.PValue)
	}
	if p := got["k chi-square"]; *p.PValue != chi.PValue || p.Drifted {
		t.Errorf("k chi-square p-value %v drifted %v, want %v", *p.PValue, p.Drifted, chi.PValue)
	}
	if !c.Columns[0].Drifted || c.Columns[1].Drifted {
		t.Errorf("drifted x %v k %v", c.Columns[0].Drifted, c.Columns[1].Drifted)
	}
	scipyAgrees(t, refCSV, curCSV, got)

	table := mustCLI(t, "drift", "compare", refCSV, curCSV)
	for _, re := range []string{
		`(?m)^FEATURE\s+TEST\s+STATISTIC\s+P-VALUE\s+CORRECTED\s+DRIFTED$`,
		`(?m)^x\s+ks\s+0\.\d+\s+\S+\s+\S+\s+yes$`,
		`(?m)^k\s+psi\s+\S+\s+-\s+-\s+no$`,
		`(?m)^drift: 1 of 2 features drifted \(bonferroni over 4 p-values, alpha 0\.01\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("table lacks %s:\n%s", re, table)
		}
	}
	if same := mustCLI(t, "drift", "compare", refCSV, refCSV); !strings.Contains(same, "no drift in 2 features") {
		t.Errorf("a set against itself:\n%s", same)
	}

	wide := filepath.Join(dir, "wide.csv")
	if err := os.WriteFile(wide, []byte("a,b,c\n1,2,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failCLI(t, "the reference has 2 columns", "drift", "compare", refCSV, wide)
	failCLI(t, `-o "yaml": want json`, "drift", "compare", refCSV, curCSV, "-o", "yaml")
	failCLI(t, `unknown correction "holm"`, "drift", "compare", refCSV, curCSV, "--correction", "holm")
	notes := filepath.Join(dir, "notes.dat")
	if err := os.WriteFile(notes, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	failCLI(t, "notes.dat: unknown format", "drift", "compare", refCSV, notes)
}

// scipyScript computes what SciPy says of the two CSV files: for x, KS,
// the Wasserstein distance, and χ², PSI and Jensen–Shannon of the counts in
// ten equal-mass bins at the reference's quantiles; for k, KS, Wasserstein
// and the rest on the counts of each value. It prints JSON.
const scipyScript = `
import csv, json, math, sys
import numpy as np
from scipy import stats
from scipy.spatial import distance

def load(p):
    rows = [r for r in csv.reader(open(p))]
    if rows[0][0] == "x":
        rows = rows[1:]
    return np.array([[float(v) for v in r] for r in rows])

def psi(a, b):
    p = a / a.sum(); q = b / b.sum()
    both = (p == 0) & (q == 0)
    p = np.maximum(p, 1e-4); q = np.maximum(q, 1e-4)
    return float(np.sum(((p - q) * np.log(p / q))[~both]))

ref, cur = load(sys.argv[1]), load(sys.argv[2])
out = {}
for j, name in enumerate(["x", "k"]):
    a, b = ref[:, j], cur[:, j]
    r = stats.ks_2samp(a, b)
    out[name + " ks"] = [r.statistic, r.pvalue]
    out[name + " wasserstein"] = [stats.wasserstein_distance(a, b)]
    if name == "k":
        cats = np.unique(np.concatenate([a, b]))
        ca = np.array([np.sum(a == c) for c in cats], float)
        cb = np.array([np.sum(b == c) for c in cats], float)
    else:
        s = np.sort(a); n = len(s)
        edges = [s[0]]
        for i in range(1, 10):
            q = s[max(math.ceil(i * n / 10) - 1, 0)]
            if q > edges[-1]:
                edges.append(q)
        edges.append(np.nextafter(s[-1], np.inf))
        ca = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1).astype(float)
        cb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=len(edges) + 1).astype(float)
    keep = (ca + cb) > 0
    chi = stats.chi2_contingency(np.array([ca[keep], cb[keep]]))
    out[name + " chi-square"] = [chi[0], chi[1]]
    out[name + " psi"] = [psi(ca, cb)]
    out[name + " jensen-shannon"] = [distance.jensenshannon(ca, cb)]
print(json.dumps(out))
`

// scipyAgrees checks the comparison's statistics and p-values against
// SciPy's on the same files.
func scipyAgrees(t *testing.T, refCSV, curCSV string, got map[string]driftref.Score) {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import scipy.stats, scipy.spatial").Run(); err != nil {
		testenv.MissingPeer(t, "Debian's SciPy is missing: install python3-scipy (scripts/debian-deps.sh)")
		return
	}
	out, err := exec.Command(python, "-c", scipyScript, refCSV, curCSV).Output()
	if err != nil {
		t.Fatalf("scipy: %v", err)
	}
	var want map[string][]float64
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(want) != 10 {
		t.Fatalf("scipy answered %d statistics", len(want))
	}
	for key, w := range want {
		s, ok := got[key]
		if !ok {
			t.Errorf("no %s in the comparison", key)
			continue
		}
		if d := math.Abs(s.Statistic - w[0]); d > 1e-9*max(1, math.Abs(w[0])) {
			t.Errorf("%s statistic %v, SciPy %v", key, s.Statistic, w[0])
		}
		if len(w) == 2 && s.PValue == nil {
			t.Errorf("%s has no p-value; SciPy's is %v", key, w[1])
		} else if len(w) == 2 && math.Abs(*s.PValue-w[1]) > 1e-9*w[1] {
			t.Errorf("%s p-value %v, SciPy %v", key, *s.PValue, w[1])
		}
	}
	t.Logf("SciPy agrees on %d statistics", len(want))
}

func TestDriftHelp(t *testing.T) {
	out := mustCLI(t, "drift", "--help")
	for _, want := range []string{"profile", "compare"} {
		if !strings.Contains(out, want) {
			t.Errorf("drift --help lacks %q:\n%s", want, out)
		}
	}
	for _, sub := range []string{"profile", "compare"} {
		if out := mustCLI(t, "drift", sub, "--help"); !strings.Contains(out, "Examples:") {
			t.Errorf("drift %s --help has no examples:\n%s", sub, out)
		}
	}
}
