package driftref

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/testenv"
)

// npyFile builds a .npy file of format major.0 with the given header dict
// (padded as NumPy pads it) and data bytes.
func npyFile(major byte, header string, data []byte) []byte {
	pre := 10
	if major > 1 {
		pre = 12
	}
	h := header + " "
	for (pre+len(h)+1)%64 != 0 {
		h += " "
	}
	h += "\n"
	var b bytes.Buffer
	b.WriteString(npyMagic)
	b.Write([]byte{major, 0})
	if major == 1 {
		_ = binary.Write(&b, binary.LittleEndian, uint16(len(h)))
	} else {
		_ = binary.Write(&b, binary.LittleEndian, uint32(len(h)))
	}
	b.WriteString(h)
	b.Write(data)
	return b.Bytes()
}

func header(descr, shape string) string {
	return fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape)
}

// encode writes values as the element type t.
func encode(t npyType, vals []float64) []byte {
	b := make([]byte, len(vals)*t.size)
	for i, v := range vals {
		e := b[i*t.size : (i+1)*t.size]
		switch {
		case t.kind == 'f' && t.size == 4:
			t.order.PutUint32(e, math.Float32bits(float32(v)))
		case t.kind == 'f':
			t.order.PutUint64(e, math.Float64bits(v))
		default:
			u := uint64(int64(v))
			switch t.size {
			case 1:
				e[0] = byte(u)
			case 2:
				t.order.PutUint16(e, uint16(u))
			case 4:
				t.order.PutUint32(e, uint32(u))
			case 8:
				t.order.PutUint64(e, u)
			}
		}
	}
	return b
}

func TestReadNPY(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	tests := []struct {
		name      string
		major     byte
		descr     string
		typ       npyType
		shape     string
		vals      []float64
		wantShape []int
		bytes     bool
	}{
		{"float32 matrix", 1, "<f4", npyType{'f', 4, le}, "(2, 3)", []float64{0, 1.5, -2, 3.25, 1e-3, math.Inf(1)}, []int{3}, false},
		{"float64 vector", 1, "<f8", npyType{'f', 8, le}, "(4,)", []float64{0.1, -0.2, math.NaN(), 1e300}, []int{1}, false},
		{"big-endian float64", 1, ">f8", npyType{'f', 8, be}, "(2, 1)", []float64{1.25, -7}, []int{1}, false},
		{"uint8 images", 1, "|u1", npyType{'u', 1, le}, "(2, 2, 2)", []float64{0, 255, 17, 3, 4, 5, 6, 200}, []int{2, 2}, true},
		{"int8", 1, "|i1", npyType{'i', 1, le}, "(3,)", []float64{-128, 0, 127}, []int{1}, false},
		{"int64", 2, "<i8", npyType{'i', 8, le}, "(2, 2)", []float64{-5, 1 << 40, 7, 0}, []int{2}, false},
		{"big-endian int16", 3, ">i2", npyType{'i', 2, be}, "(2,)", []float64{-300, 300}, []int{1}, false},
		{"uint32", 1, "<u4", npyType{'u', 4, le}, "(1, 2)", []float64{4000000000, 1}, []int{2}, false},
		{"python 2 longs", 1, "<f4", npyType{'f', 4, le}, "(2L, 1L)", []float64{1, 2}, []int{1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := npyFile(tt.major, header(tt.descr, tt.shape), encode(tt.typ, tt.vals))
			d, err := ReadNPY(bytes.NewReader(f), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.Shape, tt.wantShape) || d.Bytes != tt.bytes {
				t.Errorf("shape %v bytes %v, want %v %v", d.Shape, d.Bytes, tt.wantShape, tt.bytes)
			}
			want := tt.vals
			if tt.typ.kind == 'f' && tt.typ.size == 4 {
				want = make([]float64, len(tt.vals))
				for i, v := range tt.vals {
					want[i] = float64(float32(v))
				}
			}
			if !slices.EqualFunc(d.Values, want, func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }) {
				t.Errorf("values %v, want %v", d.Values, want)
			}
			if d.Samples()*d.Width() != len(tt.vals) {
				t.Errorf("%d samples of %d values for %d values", d.Samples(), d.Width(), len(tt.vals))
			}
		})
	}
}

func TestReadNPYRejectsMalformed(t *testing.T) {
	f4 := encode(npyType{'f', 4, binary.LittleEndian}, []float64{1, 2, 3, 4})
	good := header("<f4", "(2, 2)")
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "preamble"},
		{"no magic", []byte("PK\x03\x04 not numpy at all"), "magic"},
		{"version 4", npyFile(4, good, f4), "format version 4.0"},
		{"short header", npyFile(1, good, f4)[:20], "header"},
		{"not a dict", npyFile(1, "['descr']", f4), "not a dict"},
		{"unknown key", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}", f4), `unknown key "x"`},
		{"missing shape", npyFile(1, "{'descr': '<f4', 'fortran_order': False}", f4), `no "shape"`},
		{"key twice", npyFile(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", f4), "twice"},
		{"bool type", npyFile(1, header("|b1", "(4,)"), f4[:4]), "want float32, float64 or an integer"},
		{"complex", npyFile(1, header("<c8", "(2,)"), f4), "want float32, float64"},
		{"float16", npyFile(1, header("<f2", "(8,)"), f4), "want float32, float64"},
		{"structured", npyFile(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,)}", f4), "only simple types"},
		{"native order", npyFile(1, header("=f4", "(4,)"), f4), "byte order"},
		{"fortran order", npyFile(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2)}", f4), "Fortran order"},
		{"scalar", npyFile(1, header("<f4", "()"), f4[:4]), "scalar"},
		{"zero samples", npyFile(1, header("<f4", "(0, 3)"), nil), "holds no values"},
		{"no comma in a 1-tuple", npyFile(1, header("<f4", "(4)"), f4), "trailing comma"},
		{"negative dimension", npyFile(1, header("<f4", "(-4,)"), f4), "want a dimension"},
		{"short data", npyFile(1, good, f4[:15]), "needs 16"},
		{"trailing data", npyFile(1, good, append(f4, 0)), "trailing data"},
		{"huge shape", npyFile(1, header("<f4", "(100000, 100000)"), f4), "limit"},
		{"huge dimension", npyFile(1, header("<f4", "(99999999999999999999999,)"), f4), "limit"},
		{"garbage after dict", npyFile(1, good+" x", f4), "trailing"},
		{"quote in a key", npyFile(1, "{'descr: '<f4'}", f4), "no ':'"},
		{"unterminated string", npyFile(1, "{'descr", f4), "unterminated string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadNPY(bytes.NewReader(tt.file), 1<<20)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrNPY) {
				t.Fatalf("err = %v, want ErrNPY saying %q", err, tt.want)
			}
		})
	}
}

// TestReadNPYFromNumPy reads files NumPy itself wrote.
func TestReadNPYFromNumPy(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import numpy").Run(); err != nil {
		testenv.MissingPeer(t, "Debian's NumPy is missing: install python3-numpy (scripts/debian-deps.sh)")
		return
	}
	dir := t.TempDir()
	script := `
import sys, numpy as np
d = sys.argv[1]
x = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 8 - 1
np.save(d + "/f8.npy", x)
np.save(d + "/f4.npy", x.astype(np.float32))
np.save(d + "/u1.npy", (np.arange(24) * 10).astype(np.uint8).reshape(2, 3, 4))
np.save(d + "/i8.npy", np.arange(24).reshape(2, 3, 4) - 12)
np.save(d + "/be.npy", x.astype(">f8"))
`
	if out, err := exec.Command(python, "-c", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	for _, name := range []string{"f8", "f4", "u1", "i8", "be"} {
		d, err := ReadFile(filepath.Join(dir, name+".npy"), 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(d.Shape, []int{3, 4}) || d.Samples() != 2 || d.Bytes != (name == "u1") {
			t.Fatalf("%s: shape %v, %d samples, bytes %v", name, d.Shape, d.Samples(), d.Bytes)
		}
		for i, v := range d.Values {
			var want float64
			switch name {
			case "u1":
				want = float64(byte(i * 10))
			case "i8":
				want = float64(i - 12)
			default:
				want = float64(i)/8 - 1
			}
			if v != want {
				t.Fatalf("%s: value %d is %v, want %v", name, i, v, want)
			}
		}
	}
}

func FuzzReadNPY(f *testing.F) {
	f.Add(npyFile(1, header("<f4", "(2, 2)"), encode(npyType{'f', 4, binary.LittleEndian}, []float64{1, 2, 3, 4})))
	f.Add(npyFile(2, header("|u1", "(3,)"), []byte{1, 2, 3}))
	f.Add(npyFile(3, header(">i8", "(1, 1)"), make([]byte, 8)))
	f.Add([]byte(npyMagic + "\x01\x00\x05\x00{'x'}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ReadNPY(bytes.NewReader(b), 1<<16)
		if err != nil {
			if !errors.Is(err, ErrNPY) {
				t.Fatalf("error %v does not wrap ErrNPY", err)
			}
			return
		}
		if d.Width() < 1 || d.Samples() < 1 || d.Samples()*d.Width() != len(d.Values) || len(d.Values) > 1<<16 {
			t.Fatalf("shape %v with %d values", d.Shape, len(d.Values))
		}
	})
}

func TestReadNPYFile(t *testing.T) {
	// The format is found by content, whatever the name.
	p := filepath.Join(t.TempDir(), "data.bin")
	if err := os.WriteFile(p, npyFile(1, header("<f8", "(2,)"), encode(npyType{'f', 8, binary.LittleEndian}, []float64{1, 2})), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := ReadFile(p, 0)
	if err != nil || !slices.Equal(d.Values, []float64{1, 2}) {
		t.Fatalf("ReadFile = %+v, %v", d, err)
	}
}
