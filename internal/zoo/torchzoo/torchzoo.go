// Package torchzoo exports real architectures from PyTorch and torchvision to
// ONNX, with a fixed input and PyTorch's output on it, so that tests and
// benchmarks can run what people actually export through Outpost's runtimes
// and compare with PyTorch.
//
// The models are built with random weights from a fixed seed (nothing is
// downloaded) by export.py, embedded here and run with Debian's
// python3-torch and python3-torchvision. The files are large (ViT-B/16 is
// 330 MB), so they are never committed: Cached writes them once under the
// user's cache folder, keyed by the script's hash.
package torchzoo

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/internal/driftref"
	"outpost.dev/outpost/internal/onnx/interp"
)

//go:embed export.py
var script []byte

// Python is the interpreter the export runs with: Debian's, which imports
// the Debian packages python3-torch and python3-torchvision.
const Python = "/usr/bin/python3"

// Files written by the export into its folder.
const (
	ModelFile  = "model.onnx"
	InputFile  = "input.npy"
	OutputFile = "output.npy"
	// InputName and OutputName name the exported graph's input and output.
	InputName  = "input"
	OutputName = "output"
)

// Arch is one architecture the script exports.
type Arch struct {
	// Name is the script's name for it.
	Name string
	// Description says what it is.
	Description string
	// Input is the shape of one sample; the graph's input is [N, Input...].
	Input []int
	// Tokens reports an int64 token-id input instead of float32 pixels.
	Tokens bool
}

// Archs lists the architectures in a fixed order: the small ones first.
func Archs() []Arch {
	img := []int{3, 224, 224}
	return []Arch{
		{Name: "fashion-cnn", Description: "Fashion-MNIST CNN (Conv, Relu, AvgPool2d with padding, MaxPool2d, Linear)", Input: []int{1, 28, 28}},
		{Name: "text", Description: "text classifier: Embedding + 2-layer nn.TransformerEncoder (d=64, 4 heads, 32 tokens)", Input: []int{32}, Tokens: true},
		{Name: "squeezenet1_1", Description: "torchvision SqueezeNet 1.1", Input: img},
		{Name: "shufflenet_v2_x0_5", Description: "torchvision ShuffleNetV2 x0.5", Input: img},
		{Name: "mobilenet_v2", Description: "torchvision MobileNetV2", Input: img},
		{Name: "efficientnet_b0", Description: "torchvision EfficientNet-B0", Input: img},
		{Name: "resnet18", Description: "torchvision ResNet18", Input: img},
		{Name: "convnext_tiny", Description: "torchvision ConvNeXt-tiny", Input: img},
		{Name: "vit_b_16", Description: "torchvision ViT-B/16", Input: img},
	}
}

// Lookup returns the architecture called name.
func Lookup(name string) (Arch, error) {
	as := Archs()
	i := slices.IndexFunc(as, func(a Arch) bool { return a.Name == name })
	if i < 0 {
		return Arch{}, fmt.Errorf("torchzoo: no architecture %q", name)
	}
	return as[i], nil
}

// Script returns the export script.
func Script() []byte { return bytes.Clone(script) }

// ScriptHash is the hex SHA-256 of the export script, which keys the cache:
// a changed script exports again.
func ScriptHash() string {
	sum := sha256.Sum256(script)
	return hex.EncodeToString(sum[:])
}

// Available reports why the export cannot run here (nil when it can):
// Python, torch or torchvision missing.
func Available(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, Python, "-c", "import torch, torchvision, numpy").CombinedOutput()
	if err != nil {
		return fmt.Errorf("torchzoo: %s cannot import torch, torchvision and numpy (apt-get install python3-torchvision): %v: %s",
			Python, err, lastLine(out))
	}
	return nil
}

// Export is one architecture exported into a folder.
type Export struct {
	Arch Arch
	// Dir holds ModelFile, InputFile and OutputFile.
	Dir string
	// Batch is the fixed input's batch.
	Batch int
}

// Model is the path of the ONNX file.
func (e Export) Model() string { return filepath.Join(e.Dir, ModelFile) }

// Run exports arch into dir (created if needed) with a fixed input of batch
// samples, running the script with Python.
func Run(ctx context.Context, arch string, batch int, dir string) (Export, error) {
	a, err := Lookup(arch)
	if err != nil {
		return Export{}, err
	}
	if batch < 1 {
		return Export{}, fmt.Errorf("torchzoo: batch %d, want at least 1", batch)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Export{}, fmt.Errorf("torchzoo: %w", err)
	}
	sp := filepath.Join(dir, "export.py")
	if err := os.WriteFile(sp, script, 0o644); err != nil {
		return Export{}, fmt.Errorf("torchzoo: %w", err)
	}
	cmd := exec.CommandContext(ctx, Python, sp, arch, dir, "--batch", strconv.Itoa(batch))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Export{}, fmt.Errorf("torchzoo: export %s: %w: %s", arch, err, lastLine(stderr.Bytes()))
	}
	var summary struct {
		Arch string `json:"arch"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &summary); err != nil || summary.Arch != arch {
		return Export{}, fmt.Errorf("torchzoo: export %s printed %q", arch, lastLine(out))
	}
	return Export{Arch: a, Dir: dir, Batch: batch}, nil
}

// CacheDir is the folder Cached keeps exports in: outpost/torchzoo/<script
// hash> under the user's cache folder (the system's temporary folder when
// there is none, as for a CI job without a home).
func CacheDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "outpost", "torchzoo", ScriptHash()[:16])
}

// pruneOthers removes the exports of other versions of the script beside
// root (ViT-B/16 alone is 346 MB), best effort. Folders changed in the last
// day are left alone: another checkout may be exporting into them.
func pruneOthers(root string) {
	parent := filepath.Dir(root)
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(parent, e.Name())
		if info, err := e.Info(); err == nil && e.IsDir() && p != root && time.Since(info.ModTime()) > 24*time.Hour {
			os.RemoveAll(p)
		}
	}
}

// Cached returns arch exported with a fixed input of batch samples, from
// the cache when this script exported it before; otherwise it exports into
// a temporary folder and renames it into place, so a crashed or concurrent
// export never leaves a half-written one to be read.
func Cached(ctx context.Context, arch string, batch int) (Export, error) {
	a, err := Lookup(arch)
	if err != nil {
		return Export{}, err
	}
	root := CacheDir()
	dir := filepath.Join(root, fmt.Sprintf("%s-b%d", arch, batch))
	if _, err := os.Stat(filepath.Join(dir, OutputFile)); err == nil {
		return Export{Arch: a, Dir: dir, Batch: batch}, nil
	}
	pruneOthers(root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return Export{}, fmt.Errorf("torchzoo: %w", err)
	}
	tmp, err := os.MkdirTemp(root, ".export-")
	if err != nil {
		return Export{}, fmt.Errorf("torchzoo: %w", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := Run(ctx, arch, batch, tmp); err != nil {
		return Export{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, OutputFile)); serr != nil {
			return Export{}, fmt.Errorf("torchzoo: %w", err)
		}
		// Another process put the same export in place first.
	}
	return Export{Arch: a, Dir: dir, Batch: batch}, nil
}

// Input reads the fixed input: float32 pixels, or int64 token ids.
func (e Export) Input() (*interp.Tensor, error) {
	d, err := readNPY(filepath.Join(e.Dir, InputFile))
	if err != nil {
		return nil, err
	}
	shape := append([]int{len(d.Values) / d.Width()}, d.Shape...)
	if e.Arch.Tokens {
		x := make([]int64, len(d.Values))
		for i, v := range d.Values {
			x[i] = int64(v)
		}
		return interp.FromInt64(x, shape...), nil
	}
	return interp.FromFloat32(float32s(d.Values), shape...), nil
}

// Output reads PyTorch's output on the fixed input.
func (e Export) Output() (*interp.Tensor, error) {
	d, err := readNPY(filepath.Join(e.Dir, OutputFile))
	if err != nil {
		return nil, err
	}
	shape := append([]int{len(d.Values) / d.Width()}, d.Shape...)
	return interp.FromFloat32(float32s(d.Values), shape...), nil
}

func readNPY(path string) (*driftref.Data, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("torchzoo: %w", err)
	}
	defer f.Close()
	d, err := driftref.ReadNPY(f, 1<<26)
	if err != nil {
		return nil, fmt.Errorf("torchzoo: %s: %w", path, err)
	}
	return d, nil
}

func float32s(v []float64) []float32 {
	x := make([]float32, len(v))
	for i, f := range v {
		x[i] = float32(f)
	}
	return x
}

// lastLine is the last non-empty line of out, which is where Python puts
// the exception.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Diff is how far one output is from another.
type Diff struct {
	// MaxAbs is the largest absolute difference, at index Worst.
	MaxAbs float64
	// MaxRel is the largest |got-want|/|want| over elements where |want| > atol.
	MaxRel float64
	// Worst is the index of the element furthest outside the tolerance
	// (the largest |got-want| - (atol + rtol*|want|)).
	Worst int
	// Got and Want are the values at Worst.
	Got, Want float32
	// Bad counts elements outside atol + rtol*|want|.
	Bad int
}

// ErrShape is returned by Compare when the outputs' shapes differ.
var ErrShape = errors.New("torchzoo: output shapes differ")

// Compare measures got against want with numpy.allclose's rule: an element
// passes when |got-want| <= atol + rtol*|want|. NaN never passes.
func Compare(got, want []float32, rtol, atol float64) (Diff, error) {
	if len(got) != len(want) {
		return Diff{}, fmt.Errorf("%w: %d values, want %d", ErrShape, len(got), len(want))
	}
	d := Diff{Worst: -1}
	worst := -1.0
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		diff := math.Abs(g - w)
		over := diff - (atol + rtol*math.Abs(w))
		if math.IsNaN(diff) {
			diff, over = math.Inf(1), math.Inf(1)
		}
		if diff > d.MaxAbs {
			d.MaxAbs = diff
		}
		if math.Abs(w) > atol && diff/math.Abs(w) > d.MaxRel {
			d.MaxRel = diff / math.Abs(w)
		}
		if over > 0 {
			d.Bad++
		}
		if over > worst || d.Worst < 0 {
			worst, d.Worst = over, i
		}
	}
	if d.Worst >= 0 {
		d.Got, d.Want = got[d.Worst], want[d.Worst]
	}
	return d, nil
}
