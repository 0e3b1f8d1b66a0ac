// Package driftref works with the data behind drift monitoring's reference
// profiles: it reads data files (NumPy .npy, IDX as Fashion-MNIST ships,
// CSV), computes a model version's reference profile by running the model
// on such data and summarising its inputs and outputs with
// internal/drift's featurizer, and compares two data sets offline with
// internal/drift's exact-sample tests.
package driftref

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"outpost.dev/outpost/internal/dataset"
)

// DefaultMaxElements bounds the values read from a file, or from all the
// files of a folder, unless told otherwise: the full Fashion-MNIST
// training set has 47,040,000.
const DefaultMaxElements = 64 << 20

// maxDims bounds the dimensions of an array.
const maxDims = 8

// maxColumns bounds the columns of a CSV file.
const maxColumns = 1 << 16

// Data is a set of samples read from files: Samples() rows of Width()
// values, each sample of shape Shape, row-major, as float64.
type Data struct {
	// Shape is one sample's shape: an array's dimensions after the first
	// (the first counts the samples), [1] for a vector, [columns] for CSV.
	Shape []int
	// Names are the columns' names, from a CSV header; nil otherwise.
	Names []string
	// Bytes reports whether every value was an unsigned byte (IDX files,
	// uint8 arrays): pixels, as a rule.
	Bytes bool
	// Values holds the samples one after the other.
	Values []float64
}

// Width is the number of values of one sample.
func (d *Data) Width() int {
	n := 1
	for _, s := range d.Shape {
		n *= s
	}
	return n
}

// Samples is the number of samples.
func (d *Data) Samples() int {
	if w := d.Width(); w > 0 {
		return len(d.Values) / w
	}
	return 0
}

// Sample returns sample i's values.
func (d *Data) Sample(i int) []float64 {
	w := d.Width()
	return d.Values[i*w : (i+1)*w]
}

// Column returns column j of every sample, a new slice.
func (d *Data) Column(j int) []float64 {
	w, n := d.Width(), d.Samples()
	out := make([]float64, n)
	for i := range n {
		out[i] = d.Values[i*w+j]
	}
	return out
}

// ReadIDX decodes an IDX file of unsigned bytes (gzip-compressed or not),
// as Fashion-MNIST ships its images, with internal/dataset's reader: the
// first dimension counts the samples.
func ReadIDX(r io.Reader, maxElements int) (*Data, error) {
	if maxElements <= 0 {
		maxElements = DefaultMaxElements
	}
	x, err := dataset.ReadIDX(r, maxElements)
	if err != nil {
		return nil, err
	}
	d := &Data{Shape: sampleShape(x.Dims), Bytes: true, Values: make([]float64, len(x.Data))}
	for i, b := range x.Data {
		d.Values[i] = float64(b)
	}
	return d, nil
}

// ReadCSV decodes comma-separated values (sep ',' or '\t'), one sample a
// line and one column a feature, into Data of shape [columns]. The first
// line is a header of column names when any of its fields is not a number.
// Every line has as many fields as the first; an empty field is a missing
// value (NaN); "NaN", "Inf" and "-Inf" are read as such. At most
// maxElements values are read (<= 0 means DefaultMaxElements).
func ReadCSV(r io.Reader, sep rune, maxElements int) (*Data, error) {
	if maxElements <= 0 {
		maxElements = DefaultMaxElements
	}
	br := bufio.NewReader(r)
	if bom, err := br.Peek(3); err == nil && string(bom) == "\xef\xbb\xbf" {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.Comma = sep
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	d := &Data{}
	width := 0
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
		if width == 0 {
			width = len(rec)
			if width > maxColumns {
				return nil, fmt.Errorf("csv: %d columns, at most %d", width, maxColumns)
			}
			d.Shape = []int{width}
			if isHeader(rec) {
				names, err := headerNames(rec)
				if err != nil {
					return nil, fmt.Errorf("csv: line 1: %w", err)
				}
				d.Names = names
				continue
			}
		}
		if len(d.Values)+width > maxElements {
			return nil, fmt.Errorf("csv: more than %d values", maxElements)
		}
		for j, f := range rec {
			v, err := parseCell(f)
			if err != nil {
				return nil, fmt.Errorf("csv: line %d, column %d: %w", line, j+1, err)
			}
			d.Values = append(d.Values, v)
		}
	}
	if len(d.Values) == 0 {
		return nil, errors.New("csv: no samples")
	}
	return d, nil
}

// isHeader reports whether a first line is a header: any field that is not
// a number (empty fields aside) makes it one.
func isHeader(rec []string) bool {
	for _, f := range rec {
		if _, err := parseCell(f); err != nil {
			return true
		}
	}
	return false
}

func headerNames(rec []string) ([]string, error) {
	names := make([]string, len(rec))
	seen := map[string]bool{}
	for j, f := range rec {
		n := strings.TrimSpace(f)
		if n == "" {
			return nil, fmt.Errorf("column %d of the header has no name", j+1)
		}
		if !utf8.ValidString(n) {
			return nil, fmt.Errorf("column %d of the header is not UTF-8", j+1)
		}
		if seen[n] {
			return nil, fmt.Errorf("two columns named %q", n)
		}
		seen[n] = true
		names[j] = n
	}
	return names, nil
}

// parseCell reads one CSV value: a number, or empty for NaN.
func parseCell(f string) (float64, error) {
	f = strings.TrimSpace(f)
	if f == "" {
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return v, nil // ±Inf or 0, as the value rounds
		}
		return 0, fmt.Errorf("%q is not a number", clip(f))
	}
	return v, nil
}

// ReadFile reads one data file: a .npy file or an IDX file (either found
// by its first bytes, whatever its name), or CSV (a name ending in .csv, or
// .tsv for tabs). At most maxElements values are read (<= 0 means
// DefaultMaxElements).
func ReadFile(path string, maxElements int) (*Data, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(6)
	var d *Data
	ext := strings.ToLower(filepath.Ext(path))
	switch {
	case bytes.HasPrefix(head, []byte(npyMagic)):
		d, err = ReadNPY(br, maxElements)
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}), len(head) >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 8:
		d, err = ReadIDX(br, maxElements)
	case ext == ".csv":
		d, err = ReadCSV(br, ',', maxElements)
	case ext == ".tsv":
		d, err = ReadCSV(br, '\t', maxElements)
	default:
		return nil, fmt.Errorf("%s: unknown format: want a .npy file, an IDX file (gzipped or not) or CSV (.csv, .tsv)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// ReadPath reads a data file, or every file of a folder (not its
// subfolders, nor names starting with '.') in name order, appending their
// samples. The files of a folder must agree on one sample's shape, and on
// the column names where they have any. At most maxElements values are
// read in all (<= 0 means DefaultMaxElements).
func ReadPath(path string, maxElements int) (*Data, error) {
	if maxElements <= 0 {
		maxElements = DefaultMaxElements
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return ReadFile(path, maxElements)
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no data files", path)
	}
	var all *Data
	for _, n := range names {
		p := filepath.Join(path, n)
		left := maxElements - lenOf(all)
		if left <= 0 {
			return nil, fmt.Errorf("%s: more than %d values", path, maxElements)
		}
		d, err := ReadFile(p, left)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = d
			continue
		}
		if !slices.Equal(d.Shape, all.Shape) {
			return nil, fmt.Errorf("%s: samples of shape %v, but %s has %v", p, d.Shape, names[0], all.Shape)
		}
		if d.Names != nil && all.Names != nil && !slices.Equal(d.Names, all.Names) {
			return nil, fmt.Errorf("%s: columns %v, but %s has %v", p, d.Names, names[0], all.Names)
		}
		if all.Names == nil {
			all.Names = d.Names
		}
		all.Bytes = all.Bytes && d.Bytes
		all.Values = append(all.Values, d.Values...)
	}
	return all, nil
}

func lenOf(d *Data) int {
	if d == nil {
		return 0
	}
	return len(d.Values)
}
