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
		layout       Layout
	}{
		{"empty", nil, nil, Layout{Float32, 0}},
		{"empty target", b, nil, Layout{Float32, 0}},
		{"no base", nil, tg, Layout{Float32, 0}},
		{"same length", b, tg, Layout{Float32, 0}},
		{"float16 words", b, tg, Layout{Float16, 0}},
		{"float16 words at phase 1", b, tg, Layout{Float16, 1}},
		{"not a whole number of words", b[:3997], tg[:3999], Layout{Float32, 0}},
		{"one byte", b[:1], tg[:1], Layout{Float32, 0}},
		{"one byte before the phase", b[:1], tg[:1], Layout{Float32, 3}},
		{"target longer", b[:100], tg, Layout{Float32, 0}},
		{"base longer", b, tg[:103], Layout{Float32, 0}},
		{"unaligned weights", append([]byte{9, 9, 9}, b...), append([]byte{9, 8, 9}, tg...), Layout{Float32, 3}},
		{"unaligned weights, wrong phase", append([]byte{9, 9, 9}, b...), append([]byte{9, 8, 9}, tg...), Layout{Float32, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Blocks of 7 words: many blocks, the last one short.
			small, err := encodeBlocks(tc.base, tc.target, tc.layout, 7)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if n, err := DecodeTo(&out, bytes.NewReader(tc.base), bytes.NewReader(small), int64(len(tc.target))); err != nil || n != int64(len(tc.target)) || !bytes.Equal(out.Bytes(), tc.target) {
				t.Fatalf("7-word blocks, streamed: %d bytes, %v", n, err)
			}
			d, err := EncodeLayout(tc.base, tc.target, tc.layout)
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
	d, err := Encode(base, target)
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
	same, err := Encode(base, base)
	if err != nil {
		t.Fatal(err)
	}
	if len(same) > len(base)/100 {
		t.Errorf("an unchanged file's delta is %d bytes", len(same))
	}
	t.Logf("1 MiB of float32 weights moved by 0.001: delta %d bytes (%.2f), plain XOR + zstd %d (%.2f)",
		len(d), float64(len(d))/float64(len(target)), len(plain), float64(len(plain))/float64(len(target)))
}

// TestSizesByMove pins the share of the file a full fine-tune's delta
// costs for how far the weights moved (N(0, 0.05²) weights, as bench/sync
// writes them; its -change 100 moves them by 0.01).
func TestSizesByMove(t *testing.T) {
	for _, tc := range []struct {
		move, atMost float64
	}{{0.01, 0.78}, {0.001, 0.68}, {0.0001, 0.60}} {
		base, target := weights(1<<18, tc.move, 6)
		d, err := Encode(base, target)
		if err != nil {
			t.Fatal(err)
		}
		if share := float64(len(d)) / float64(len(target)); share > tc.atMost {
			t.Errorf("weights moved by %g: the delta is %.3f of the file, want at most %.2f", tc.move, share, tc.atMost)
		} else {
			t.Logf("weights moved by %g: the delta is %.3f of the file", tc.move, share)
		}
	}
}

// TestChoose checks that the layout found encodes the weights about as
// small as the layout they have, and clearly smaller than a wrong one.
func TestChoose(t *testing.T) {
	b, tg := weights(100000, 0.001, 8)
	half := func(x []byte) []byte { // the float32 weights as float16 (their high halves)
		out := make([]byte, len(x)/2)
		for i := 0; i+3 < len(x); i += 4 {
			out[i/2], out[i/2+1] = x[i+2], x[i+3]
		}
		return out
	}
	size := func(base, target []byte, l Layout) int {
		d, err := EncodeLayout(base, target, l)
		if err != nil {
			t.Fatal(err)
		}
		return len(d)
	}
	for _, tc := range []struct {
		name         string
		base, target []byte
		true, wrong  Layout
	}{
		{"float32 at 0", b, tg, Layout{Float32, 0}, Layout{Float32, 2}},
		{"float32 after 3 bytes", append([]byte{1, 2, 3}, b...), append([]byte{1, 2, 3}, tg...), Layout{Float32, 3}, Layout{Float32, 0}},
		{"float32 after 6 bytes", append(make([]byte, 6), b...), append(make([]byte, 6), tg...), Layout{Float32, 2}, Layout{Float32, 1}},
		{"float16 at 0", half(b), half(tg), Layout{Float16, 0}, Layout{Float16, 1}},
		{"float16 after a byte", append([]byte{7}, half(b)...), append([]byte{7}, half(tg)...), Layout{Float16, 1}, Layout{Float16, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Choose(tc.base, tc.target)
			g, w, x := size(tc.base, tc.target, got), size(tc.base, tc.target, tc.true), size(tc.base, tc.target, tc.wrong)
			if float64(g) > 1.01*float64(w) || float64(g) > 0.95*float64(x) {
				t.Errorf("Choose = %+v: %d bytes; the weights' own layout %+v gives %d, a wrong one %+v %d", got, g, tc.true, w, tc.wrong, x)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	base, target := weights(100, 0.01, 3)
	good, err := encodeBlocks(base, target, Layout{Float32, 0}, 30) // 4 blocks
	if err != nil {
		t.Fatal(err)
	}
	// The header, with one byte of words per block.
	hdr := len(Magic) + 3 + len(binary.AppendUvarint(nil, uint64(len(target)))) + 1
	// claims is good's body under a header claiming n bytes.
	claims := func(n int) []byte {
		h := append([]byte(Magic+"\x03\x04\x00"), binary.AppendUvarint(nil, uint64(n))...)
		return append(h, good[hdr-1:]...)
	}
	firstFrame := hdr + 1 // the first frame's length is one byte too
	damaged := bytes.Clone(good)
	damaged[firstFrame+10] ^= 0xff
	for _, tc := range []struct {
		name, want string
		delta      []byte
		max        int64
	}{
		{"not a delta", "magic", []byte("PK\x03\x04 something else"), 1000},
		{"empty", "magic", nil, 1000},
		{"older version", "version 2", append([]byte(Magic+"\x02\x04\x00"), good[len(Magic)+3:]...), 1000},
		{"bad width", "width 3", append([]byte(Magic+"\x03\x03\x00"), good[len(Magic)+3:]...), 1000},
		{"bad phase", "phase 4", append([]byte(Magic+"\x03\x04\x04"), good[len(Magic)+3:]...), 1000},
		{"header cut", "cut short", []byte(Magic + "\x03\x04"), 1000},
		{"no block size", "block size", append([]byte(Magic+"\x03\x04\x00"), 100), 1000},
		{"block size 0", "block size", append([]byte(Magic+"\x03\x04\x00"), 100, 0), 1000},
		{"too large", "more than the 399 expected", good, 399},
		{"cut in a frame", "cut short", good[:len(good)-5], 1000},
		{"a damaged frame", "damaged", damaged, 1000},
		{"claims fewer bytes", "", claims(396), 1000},
		{"claims more bytes", "", claims(404), 1000},
		{"trailing bytes", "more bytes", append(bytes.Clone(good), 0), 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(base, tc.delta, tc.max)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := EncodeLayout(base, target, Layout{3, 0}); err == nil {
		t.Error("EncodeLayout took width 3")
	}
	if _, err := EncodeLayout(base, target, Layout{Float16, 2}); err == nil {
		t.Error("EncodeLayout took phase 2 for float16")
	}
}

func FuzzDecode(f *testing.F) {
	base, target := weights(64, 0.01, 4)
	good, _ := Encode(base, target)
	f.Add(good)
	f.Add([]byte(Magic + "\x03\x02\x01\x05\x01"))
	f.Fuzz(func(t *testing.T, delta []byte) {
		out, err := Decode(base, delta, 1<<16)
		if err == nil && int64(len(out)) > 1<<16 {
			t.Fatalf("%d bytes out, more than the bound", len(out))
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{1, 2, 3}, []byte{4, 5, 6, 7, 8}, true, uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, base, target []byte, half bool, phase, block uint8) {
		l := Layout{Float32, int(phase % 4)}
		if half {
			l = Layout{Float16, int(phase % 2)}
		}
		d, err := encodeBlocks(base, target, l, 1+int(block))
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
		if _, err := Encode(base, target); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	base, target := weights(1<<20, 0.001, 5)
	d, _ := Encode(base, target)
	b.SetBytes(int64(len(target)))
	for b.Loop() {
		if _, err := Decode(base, d, int64(len(target))); err != nil {
			b.Fatal(err)
		}
	}
}
