package weightdelta

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// weights returns n float32 weights drawn from N(0, 0.05²), as bytes, and
// the same weights each moved by N(0, move²).
func weights(n int, move float64, seed uint64) (base, target []byte) {
	r := rand.New(rand.NewPCG(seed, 7))
	base, target = make([]byte, 4*n), make([]byte, 4*n)
	for i := range n {
		w := r.NormFloat64() * 0.05
		binary.LittleEndian.PutUint32(base[4*i:], math.Float32bits(float32(w)))
		binary.LittleEndian.PutUint32(target[4*i:], math.Float32bits(float32(w+r.NormFloat64()*move)))
	}
	return base, target
}

func TestRoundTrip(t *testing.T) {
	b, tg := weights(1000, 0.01, 1)
	for _, tc := range []struct {
		name         string
		base, target []byte
		width        int
	}{
		{"empty", nil, nil, Float32},
		{"empty target", b, nil, Float32},
		{"no base", nil, tg, Float32},
		{"same length", b, tg, Float32},
		{"float16 words", b, tg, Float16},
		{"not a whole number of words", b[:3997], tg[:3999], Float32},
		{"one byte", b[:1], tg[:1], Float32},
		{"target longer", b[:100], tg, Float32},
		{"base longer", b, tg[:103], Float32},
		{"unaligned weights", append([]byte{9, 9, 9}, b...), append([]byte{9, 8, 9}, tg...), Float32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Encode(tc.base, tc.target, tc.width)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(tc.base, d, int64(len(tc.target)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.target) {
				t.Fatalf("decoded %d bytes, not the target's %d", len(got), len(tc.target))
			}
		})
	}
}

// TestSizes checks what the format is for: weights that all moved a
// little cost well under their size, unchanged ones almost nothing; and
// byte planes beat zstd of the plain XOR.
func TestSizes(t *testing.T) {
	base, target := weights(1<<18, 0.001, 2) // 1 MiB, every weight moved
	d, err := Encode(base, target, Float32)
	if err != nil {
		t.Fatal(err)
	}
	if share := float64(len(d)) / float64(len(target)); share > 0.8 {
		t.Errorf("a full fine-tune's delta is %.2f of the file", share)
	}
	xor := make([]byte, len(target))
	for i := range xor {
		xor[i] = target[i] ^ base[i]
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	plain := enc.EncodeAll(xor, nil)
	if len(d) >= len(plain) {
		t.Errorf("byte planes %d bytes, plain XOR %d: the planes should win", len(d), len(plain))
	}
	same, err := Encode(base, base, Float32)
	if err != nil {
		t.Fatal(err)
	}
	if len(same) > len(base)/100 {
		t.Errorf("an unchanged file's delta is %d bytes", len(same))
	}
	t.Logf("1 MiB of float32 weights moved by 0.001: delta %d bytes (%.2f), plain XOR + zstd %d (%.2f)",
		len(d), float64(len(d))/float64(len(target)), len(plain), float64(len(plain))/float64(len(target)))
}

func TestDecodeRefuses(t *testing.T) {
	base, target := weights(100, 0.01, 3)
	good, err := Encode(base, target, Float32)
	if err != nil {
		t.Fatal(err)
	}
	hdr := len(Magic) + 2 + len(binary.AppendUvarint(nil, uint64(len(target))))
	longer, _ := Encode(base, append(target, 1, 2, 3, 4), Float32)
	short := append([]byte{}, good[:hdr]...)
	short = append(short, longer[hdr+1:]...) // planes of 404 bytes under a header of 400
	for _, tc := range []struct {
		name, want string
		delta      []byte
		max        int64
	}{
		{"not a delta", "magic", []byte("PK\x03\x04 something else"), 1000},
		{"empty", "magic", nil, 1000},
		{"newer version", "version 2", append([]byte(Magic+"\x02\x04"), good[len(Magic)+2:]...), 1000},
		{"bad width", "width 3", append([]byte(Magic+"\x01\x03"), good[len(Magic)+2:]...), 1000},
		{"too large", "more than the 399 expected", good, 399},
		{"truncated planes", "fewer bytes", good[:len(good)-5], 1000},
		{"planes longer than claimed", "", short, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(base, tc.delta, tc.max)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := Encode(base, target, 3); err == nil {
		t.Error("Encode took width 3")
	}
}

func FuzzDecode(f *testing.F) {
	base, target := weights(64, 0.01, 4)
	good, _ := Encode(base, target, Float32)
	f.Add(good)
	f.Add([]byte(Magic + "\x01\x02\x05"))
	f.Fuzz(func(t *testing.T, delta []byte) {
		out, err := Decode(base, delta, 1<<16)
		if err == nil && int64(len(out)) > 1<<16 {
			t.Fatalf("%d bytes out, more than the bound", len(out))
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{1, 2, 3}, []byte{4, 5, 6, 7, 8}, true)
	f.Fuzz(func(t *testing.T, base, target []byte, half bool) {
		width := Float32
		if half {
			width = Float16
		}
		d, err := Encode(base, target, width)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(base, d, int64(len(target)))
		if err != nil || !bytes.Equal(got, target) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	base, target := weights(1<<20, 0.001, 5) // 4 MiB
	b.SetBytes(int64(len(target)))
	for b.Loop() {
		if _, err := Encode(base, target, Float32); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	base, target := weights(1<<20, 0.001, 5)
	d, _ := Encode(base, target, Float32)
	b.SetBytes(int64(len(target)))
	for b.Loop() {
		if _, err := Decode(base, d, int64(len(target))); err != nil {
			b.Fatal(err)
		}
	}
}
