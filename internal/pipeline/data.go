package pipeline

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/driftref"
	"outpost.dev/outpost/internal/train"
)

// This file holds the engine's labelled data sets: what dataset steps read
// from a local folder, and the artifacts they write for the steps after
// them. A data set artifact is a NumPy .npz archive (stored, not
// compressed, with fixed times, so the same data gives the same digest)
// holding x.npy (the samples: uint8 pixels, or float32 features), y.npy
// (uint8 class labels) and classes.npy (the number of classes, int64 of
// shape (1,)): numpy.load reads it as is, and so can exec steps.

// Names of the arrays of a data set archive.
const (
	npzSamples = "x.npy"
	npzLabels  = "y.npy"
	npzClasses = "classes.npy"
)

// maxDataElements bounds the values read from one source (the full
// Fashion-MNIST training set has 47,040,000).
const maxDataElements = driftref.DefaultMaxElements

// BuiltinFashion is the dataset path of the Fashion-MNIST subset embedded
// in the binary (6000 training and 1000 test images).
const BuiltinFashion = "builtin:fashion-mnist"

// table is a labelled data set: Len samples of shape shape, uint8 (scaled
// to [0, 1] when used, the convention of internal/train's models) or
// float32 (used as they are), each with a class label below classes. It
// is a train.Dataset.
type table struct {
	shape   []int
	u8      []byte    // Len*Dim values, when the samples are bytes
	f32     []float32 // Len*Dim values otherwise
	labels  []uint8
	classes int
}

// Len is the number of samples.
func (t *table) Len() int { return len(t.labels) }

// Dim is the number of values of a sample.
func (t *table) Dim() int {
	n := 1
	for _, s := range t.shape {
		n *= s
	}
	return n
}

// Sample writes sample i into dst and returns its label.
func (t *table) Sample(i int, dst []float32) int {
	d := t.Dim()
	if t.u8 != nil {
		for j, p := range t.u8[i*d : (i+1)*d] {
			dst[j] = float32(p) / 255
		}
	} else {
		copy(dst, t.f32[i*d:(i+1)*d])
	}
	return int(t.labels[i])
}

// pick returns the samples idx of t, in that order.
func (t *table) pick(idx []int) *table {
	d := t.Dim()
	out := &table{shape: slices.Clone(t.shape), classes: t.classes, labels: make([]uint8, len(idx))}
	if t.u8 != nil {
		out.u8 = make([]byte, 0, len(idx)*d)
	} else {
		out.f32 = make([]float32, 0, len(idx)*d)
	}
	for k, i := range idx {
		out.labels[k] = t.labels[i]
		if t.u8 != nil {
			out.u8 = append(out.u8, t.u8[i*d:(i+1)*d]...)
		} else {
			out.f32 = append(out.f32, t.f32[i*d:(i+1)*d]...)
		}
	}
	return out
}

// fromSet converts an IDX data set.
func fromSet(s *dataset.Set) *table {
	return &table{shape: []int{s.Rows, s.Cols}, u8: s.Images, labels: s.Labels, classes: s.Classes}
}

// fromData makes a table of samples x and labels y read by driftref.
func fromData(x, y *driftref.Data) (*table, error) {
	if x.Samples() != y.Samples() || y.Width() != 1 {
		return nil, fmt.Errorf("%d samples but %d labels of %d values each", x.Samples(), y.Samples(), y.Width())
	}
	labels, classes, err := toLabels(y.Values)
	if err != nil {
		return nil, err
	}
	t := &table{shape: slices.Clone(x.Shape), labels: labels, classes: classes}
	if x.Bytes {
		t.u8 = make([]byte, len(x.Values))
		for i, v := range x.Values {
			t.u8[i] = byte(v)
		}
	} else {
		t.f32 = make([]float32, len(x.Values))
		for i, v := range x.Values {
			t.f32[i] = float32(v)
		}
	}
	return t, nil
}

// values returns the samples of t (not their labels) as driftref reads data
// files: byte samples stay bytes (pixels, scaled as the models expect).
func (t *table) values() *driftref.Data {
	d := &driftref.Data{Shape: slices.Clone(t.shape), Bytes: t.u8 != nil}
	if t.u8 != nil {
		d.Values = make([]float64, len(t.u8))
		for i, v := range t.u8 {
			d.Values[i] = float64(v)
		}
	} else {
		d.Values = make([]float64, len(t.f32))
		for i, v := range t.f32 {
			d.Values[i] = float64(v)
		}
	}
	return d
}

// toLabels converts label values: integers from 0 to 255. classes is one
// above the largest.
func toLabels(vs []float64) ([]uint8, int, error) {
	out := make([]uint8, len(vs))
	top := 0
	for i, v := range vs {
		if v != math.Trunc(v) || v < 0 || v > 255 {
			return nil, 0, fmt.Errorf("label %d is %v: labels are class numbers from 0 to 255", i, v)
		}
		out[i] = uint8(v)
		top = max(top, int(v)+1)
	}
	return out, top, nil
}

// setClasses checks the labels of t against a number of classes, which
// replaces what the labels suggest.
func (t *table) setClasses(classes int) error {
	for i, l := range t.labels {
		if int(l) >= classes {
			return fmt.Errorf("label %d of sample %d is not below %d classes", l, i, classes)
		}
	}
	t.classes = classes
	return nil
}

// writeNPY writes one array in NumPy's .npy format, version 1.0.
func writeNPY(w io.Writer, descr string, shape []int, data []byte) error {
	dims := make([]string, len(shape))
	for i, s := range shape {
		dims[i] = strconv.Itoa(s)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, sh)
	// magic (6) + version (2) + length (2) + header + '\n', to a multiple of 64
	pad := 64 - (10+len(h)+1)%64
	if pad == 64 {
		pad = 0
	}
	h += strings.Repeat(" ", pad) + "\n"
	var pre [10]byte
	copy(pre[:], "\x93NUMPY\x01\x00")
	binary.LittleEndian.PutUint16(pre[8:], uint16(len(h)))
	if _, err := w.Write(pre[:]); err != nil {
		return err
	}
	if _, err := io.WriteString(w, h); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// zipTime is the modification time of every member of an archive the
// engine writes, so that equal data gives equal bytes.
var zipTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// marshalNPZ encodes t as a data set archive.
func (t *table) marshalNPZ() ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	put := func(name, descr string, shape []int, data []byte) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, Modified: zipTime})
		if err != nil {
			return err
		}
		return writeNPY(w, descr, shape, data)
	}
	shape := append([]int{t.Len()}, t.shape...)
	var err error
	if t.u8 != nil {
		err = put(npzSamples, "|u1", shape, t.u8)
	} else {
		b := make([]byte, 4*len(t.f32))
		for i, v := range t.f32 {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		err = put(npzSamples, "<f4", shape, b)
	}
	if err == nil {
		err = put(npzLabels, "|u1", []int{t.Len()}, t.labels)
	}
	if err == nil {
		var c [8]byte
		binary.LittleEndian.PutUint64(c[:], uint64(t.classes))
		err = put(npzClasses, "<i8", []int{1}, c[:])
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readNPZ reads a data set archive: x.npy and y.npy (classes.npy if
// there is one), the samples and their labels. Keras-style names
// (x_train.npy, y_train.npy, x_test.npy, y_test.npy) give two sets.
func readNPZ(r io.ReaderAt, size int64) (train, test *table, err error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, nil, fmt.Errorf("npz: %w", err)
	}
	members := map[string]*zip.File{}
	for _, f := range zr.File {
		members[f.Name] = f
	}
	read := func(name string) (*driftref.Data, error) {
		f, ok := members[name]
		if !ok {
			return nil, nil
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("npz: %s: %w", name, err)
		}
		defer rc.Close()
		d, err := driftref.ReadNPY(rc, maxDataElements)
		if err != nil {
			return nil, fmt.Errorf("npz: %s: %w", name, err)
		}
		return d, nil
	}
	pair := func(xn, yn string) (*table, error) {
		x, err := read(xn)
		if err != nil || x == nil {
			return nil, err
		}
		y, err := read(yn)
		if err != nil {
			return nil, err
		}
		if y == nil {
			return nil, fmt.Errorf("npz: %s but no %s", xn, yn)
		}
		t, err := fromData(x, y)
		if err != nil {
			return nil, fmt.Errorf("npz: %w", err)
		}
		return t, nil
	}
	if train, err = pair(npzSamples, npzLabels); err != nil {
		return nil, nil, err
	}
	if train == nil {
		if train, err = pair("x_train.npy", "y_train.npy"); err != nil {
			return nil, nil, err
		}
		if train == nil {
			return nil, nil, errors.New("npz: no x.npy (samples) and y.npy (labels), nor x_train.npy and y_train.npy")
		}
		if test, err = pair("x_test.npy", "y_test.npy"); err != nil {
			return nil, nil, err
		}
	}
	c, err := read(npzClasses)
	if err != nil {
		return nil, nil, err
	}
	if c != nil {
		if len(c.Values) != 1 || c.Values[0] != math.Trunc(c.Values[0]) || c.Values[0] < 1 || c.Values[0] > 256 {
			return nil, nil, fmt.Errorf("npz: %s: want one number of classes from 1 to 256", npzClasses)
		}
		for _, t := range []*table{train, test} {
			if t != nil {
				if err := t.setClasses(int(c.Values[0])); err != nil {
					return nil, nil, fmt.Errorf("npz: %w", err)
				}
			}
		}
	}
	return train, test, nil
}

// readNPZFile reads a data set archive from a file.
func readNPZFile(path string) (train, test *table, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	return readNPZ(f, fi.Size())
}

// readTable reads one data set artifact (its train part).
func readTable(path string) (*table, error) {
	t, _, err := readNPZFile(path)
	if err != nil {
		return nil, fmt.Errorf("data set %s: %w", filepath.Base(path), err)
	}
	return t, nil
}

// readCSV reads CSV: the first column is the label, the others the
// features (a first line that is not numbers is a header).
func readCSV(r io.Reader, sep rune) (*table, error) {
	d, err := driftref.ReadCSV(r, sep, maxDataElements)
	if err != nil {
		return nil, err
	}
	w := d.Width()
	if w < 2 {
		return nil, errors.New("csv: want a label column and at least one feature column")
	}
	n := d.Samples()
	y := make([]float64, n)
	x := make([]float32, 0, n*(w-1))
	for i := range n {
		s := d.Sample(i)
		y[i] = s[0]
		for _, v := range s[1:] {
			x = append(x, float32(v))
		}
	}
	labels, classes, err := toLabels(y)
	if err != nil {
		return nil, fmt.Errorf("csv: first column: %w", err)
	}
	return &table{shape: []int{w - 1}, f32: x, labels: labels, classes: classes}, nil
}

// concat appends the samples of o to t; shapes and kinds must agree.
func (t *table) concat(o *table) error {
	if !slices.Equal(t.shape, o.shape) || (t.u8 == nil) != (o.u8 == nil) {
		return fmt.Errorf("samples of shape %v and %v do not mix", t.shape, o.shape)
	}
	t.u8 = append(t.u8, o.u8...)
	t.f32 = append(t.f32, o.f32...)
	t.labels = append(t.labels, o.labels...)
	t.classes = max(t.classes, o.classes)
	return nil
}

// source is what a dataset step reads: one set, or a training and a test set.
type source struct {
	train, test *table
	what        string // for the log
}

// readSource reads the data at path in format ("" finds it out).
func readSource(path, format string) (*source, error) {
	if path == BuiltinFashion {
		tr, te, err := dataset.FashionSubset()
		if err != nil {
			return nil, err
		}
		return &source{train: fromSet(tr), test: fromSet(te), what: "the embedded Fashion-MNIST subset"}, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return readSourceFile(path, format)
	}
	names, err := dataFiles(path)
	if err != nil {
		return nil, err
	}
	has := func(n string) bool { return slices.Contains(names, n) }
	if format == "" || format == "idx" {
		if s, err := readIDXDir(path, names); s != nil || err != nil {
			return s, err
		}
		if format == "idx" {
			return nil, fmt.Errorf("%s: no IDX files (NAME-images-idx3-ubyte and NAME-labels-idx1-ubyte, gzipped or not)", path)
		}
	}
	if format == "" || format == "npy" {
		for _, p := range [][2]string{{"images.npy", "labels.npy"}, {"x.npy", "y.npy"}} {
			if has(p[0]) && has(p[1]) {
				x, err := driftref.ReadFile(filepath.Join(path, p[0]), maxDataElements)
				if err != nil {
					return nil, err
				}
				y, err := driftref.ReadFile(filepath.Join(path, p[1]), maxDataElements)
				if err != nil {
					return nil, err
				}
				t, err := fromData(x, y)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				return &source{train: t, what: filepath.Join(path, p[0]) + " and " + p[1]}, nil
			}
		}
		if format == "npy" {
			return nil, fmt.Errorf("%s: no images.npy and labels.npy (or x.npy and y.npy)", path)
		}
	}
	var pick []string
	for _, n := range names {
		ext := strings.ToLower(filepath.Ext(n))
		if (format == "" || format == "npz") && ext == ".npz" || (format == "" || format == "csv") && (ext == ".csv" || ext == ".tsv") {
			pick = append(pick, n)
		}
	}
	if len(pick) == 0 {
		return nil, fmt.Errorf("%s holds no data: want IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-...), images.npy and labels.npy, .npz archives (x, y), or CSV files (label first)", path)
	}
	var all *source
	for _, n := range pick {
		s, err := readSourceFile(filepath.Join(path, n), format)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = s
			continue
		}
		if err := all.train.concat(s.train); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if s.test != nil {
			if all.test == nil {
				all.test = s.test
			} else if err := all.test.concat(s.test); err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
		}
	}
	all.what = fmt.Sprintf("%d files of %s", len(pick), path)
	return all, nil
}

// dataFiles lists the regular files of a folder, sorted, hidden ones aside.
func dataFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// readSourceFile reads one data file: .npz, .csv or .tsv.
func readSourceFile(path, format string) (*source, error) {
	ext := strings.ToLower(filepath.Ext(path))
	if format == "" {
		format = strings.TrimPrefix(ext, ".")
		if format == "tsv" {
			format = "csv"
		}
	}
	switch format {
	case "npz":
		tr, te, err := readNPZFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &source{train: tr, test: te, what: path}, nil
	case "csv":
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sep := ','
		if ext == ".tsv" {
			sep = '\t'
		}
		t, err := readCSV(f, sep)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &source{train: t, what: path}, nil
	}
	return nil, fmt.Errorf("%s: not a data file the dataset step reads (.npz, .csv, .tsv), nor a folder", path)
}

// readIDXDir reads the IDX pairs of a folder: NAME-images-idx3-ubyte and
// NAME-labels-idx1-ubyte (".gz" or not). NAME train is the training set,
// t10k or test the test set; a single pair of another name is one set.
// It returns nil and no error when the folder holds no pair.
func readIDXDir(dir string, names []string) (*source, error) {
	pairs := map[string][2]string{}
	for _, n := range names {
		base := strings.TrimSuffix(n, ".gz")
		if p, ok := strings.CutSuffix(base, "-images-idx3-ubyte"); ok {
			e := pairs[p]
			e[0] = n
			pairs[p] = e
		} else if p, ok := strings.CutSuffix(base, "-labels-idx1-ubyte"); ok {
			e := pairs[p]
			e[1] = n
			pairs[p] = e
		}
	}
	read := func(p [2]string) (*table, error) {
		if p[0] == "" || p[1] == "" {
			return nil, fmt.Errorf("%s: IDX images %q without labels, or labels %q without images", dir, p[0], p[1])
		}
		im, err := os.Open(filepath.Join(dir, p[0]))
		if err != nil {
			return nil, err
		}
		defer im.Close()
		lb, err := os.Open(filepath.Join(dir, p[1]))
		if err != nil {
			return nil, err
		}
		defer lb.Close()
		s, err := dataset.Read(im, lb, 256)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", dir, p[0], err)
		}
		t := fromSet(s)
		_, t.classes, _ = toLabels(labelsAsFloats(t.labels))
		return t, nil
	}
	src := &source{what: "IDX files of " + dir}
	var err error
	switch {
	case len(pairs) == 0:
		return nil, nil
	case pairs["train"] != [2]string{}:
		if src.train, err = read(pairs["train"]); err != nil {
			return nil, err
		}
		for _, name := range []string{"t10k", "test"} {
			if p, ok := pairs[name]; ok {
				if src.test, err = read(p); err != nil {
					return nil, err
				}
				break
			}
		}
		if src.test != nil {
			src.train.classes = max(src.train.classes, src.test.classes)
			src.test.classes = src.train.classes
		}
	case len(pairs) == 1:
		for _, p := range pairs {
			if src.train, err = read(p); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%s: several IDX pairs and none named train-...", dir)
	}
	return src, nil
}

func labelsAsFloats(l []uint8) []float64 {
	out := make([]float64, len(l))
	for i, v := range l {
		out[i] = float64(v)
	}
	return out
}

// shuffled returns 0..n-1 in an order drawn from seed.
func shuffled(n int, seed uint64) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	rng := rand.New(rand.NewPCG(seed, 0x64617461)) // "data"
	rng.Shuffle(n, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	return idx
}

// ReadDataset reads the labelled data at path in format ("" finds it out: idx, npy, npz or
// csv), as a dataset step does: its training samples and, when the source has its own, its
// test samples (nil otherwise). Federated training at the edge reads its local data with it.
func ReadDataset(path, format string) (trainSet, testSet train.Dataset, err error) {
	s, err := readSource(path, format)
	if err != nil {
		return nil, nil, err
	}
	if s.test == nil {
		return s.train, nil, nil
	}
	return s.train, s.test, nil
}
