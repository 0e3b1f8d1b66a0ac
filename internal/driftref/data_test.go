package driftref

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func sameValues(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) })
}

func TestReadCSV(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name   string
		in     string
		sep    rune
		names  []string
		values []float64
	}{
		{"header", "a,b\n1,2\n3,4.5\n", ',', []string{"a", "b"}, []float64{1, 2, 3, 4.5}},
		{"no header", "1,2\n-3e2, 4\n", ',', nil, []float64{1, 2, -300, 4}},
		{"missing and special values", "x,y\n,NaN\ninf,-Inf\n", ',', []string{"x", "y"}, []float64{nan, nan, math.Inf(1), math.Inf(-1)}},
		{"byte order mark and CRLF", "\xef\xbb\xbfp, q\r\n1,2\r\n", ',', []string{"p", "q"}, []float64{1, 2}},
		{"tabs", "a\tb\n1\t2\n", '\t', []string{"a", "b"}, []float64{1, 2}},
		{"one column", "v\n1\n2\n3\n", ',', []string{"v"}, []float64{1, 2, 3}},
		{"quoted", "\"a,b\",c\n\"1\",2\n", ',', []string{"a,b", "c"}, []float64{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ReadCSV(strings.NewReader(tt.in), tt.sep, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.Names, tt.names) || !sameValues(d.Values, tt.values) || len(d.Shape) != 1 || d.Bytes {
				t.Fatalf("got names %q values %v shape %v", d.Names, d.Values, d.Shape)
			}
			if d.Samples()*d.Width() != len(tt.values) {
				t.Fatalf("%d samples of %d", d.Samples(), d.Width())
			}
		})
	}
}

func TestReadCSVRejectsMalformed(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", "no samples"},
		{"header only", "a,b\n", "no samples"},
		{"ragged", "a,b\n1,2\n3\n", "wrong number of fields"},
		{"text in data", "a,b\n1,2\n3,x\n", `line 3, column 2: "x" is not a number`},
		{"duplicate names", "a,a\n1,2\n", `two columns named "a"`},
		{"unnamed column", "a,,c\n1,2,3\nx,1,1\n", "column 2 of the header has no name"},
		{"too many values", "1,2,3\n4,5,6\n7,8,9\n", "more than 8 values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tt.in), ',', 8)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzReadCSV(f *testing.F) {
	f.Add("a,b\n1,2\n")
	f.Add("1,2\n3\n")
	f.Add("\"x\ny\",1\n1,2")
	f.Fuzz(func(t *testing.T, in string) {
		d, err := ReadCSV(strings.NewReader(in), ',', 1<<12)
		if err != nil {
			return
		}
		if d.Width() < 1 || d.Samples() < 1 || d.Samples()*d.Width() != len(d.Values) || d.Names != nil && len(d.Names) != d.Width() {
			t.Fatalf("shape %v names %d with %d values", d.Shape, len(d.Names), len(d.Values))
		}
	})
}

// idxFile builds an IDX ubyte file.
func idxFile(dims []uint32, data []byte) []byte {
	b := []byte{0, 0, 8, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, data...)
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadPath(t *testing.T) {
	dir := t.TempDir()
	images := idxFile([]uint32{2, 2, 3}, []byte{0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255})
	writeFile(t, filepath.Join(dir, "a-images-idx3-ubyte.gz"), gzipped(t, images))
	writeFile(t, filepath.Join(dir, "b.npy"), npyFile(1, header("|u1", "(1, 2, 3)"), []byte{9, 8, 7, 6, 5, 4}))
	writeFile(t, filepath.Join(dir, ".hidden"), []byte("ignored"))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := ReadPath(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Shape, []int{2, 3}) || d.Samples() != 3 || !d.Bytes {
		t.Fatalf("shape %v samples %d bytes %v", d.Shape, d.Samples(), d.Bytes)
	}
	if !slices.Equal(d.Sample(2), []float64{9, 8, 7, 6, 5, 4}) || d.Column(5)[1] != 255 {
		t.Fatalf("values %v", d.Values)
	}
	// One file alone.
	one, err := ReadPath(filepath.Join(dir, "b.npy"), 0)
	if err != nil || one.Samples() != 1 {
		t.Fatalf("one file: %+v, %v", one, err)
	}

	tests := []struct {
		name  string
		files map[string][]byte
		limit int
		want  string
	}{
		{"shapes differ", map[string][]byte{"a.npy": npyFile(1, header("<f4", "(1, 2)"), make([]byte, 8)), "b.npy": npyFile(1, header("<f4", "(1, 3)"), make([]byte, 12))}, 0, "samples of shape [3], but a.npy has [2]"},
		{"names differ", map[string][]byte{"a.csv": []byte("x,y\n1,2\n"), "b.csv": []byte("x,z\n1,2\n")}, 0, "columns [x z], but a.csv has [x y]"},
		{"unknown format", map[string][]byte{"notes.txt": []byte("hello")}, 0, "unknown format"},
		{"empty folder", map[string][]byte{}, 0, "no data files"},
		{"over the limit together", map[string][]byte{"a.npy": npyFile(1, header("<f4", "(2,)"), make([]byte, 8)), "b.npy": npyFile(1, header("<f4", "(2,)"), make([]byte, 8))}, 3, "limit"},
		{"malformed idx", map[string][]byte{"x-idx1-ubyte": idxFile([]uint32{4}, []byte{1, 2})}, 0, "malformed IDX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, b := range tt.files {
				writeFile(t, filepath.Join(dir, n), b)
			}
			_, err := ReadPath(dir, tt.limit)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
