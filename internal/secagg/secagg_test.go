package secagg

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// rng is a deterministic stream of random bytes for test seed.
func rng(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.NewChaCha8(s)
}

func TestShamir(t *testing.T) {
	r := rng(1)
	secret := bytes.Repeat([]byte{0xab, 0x01}, 16)
	for _, tc := range []struct{ t, n int }{{1, 1}, {1, 5}, {2, 3}, {3, 5}, {5, 5}, {7, 20}} {
		shares, err := Split(secret, tc.t, tc.n, r)
		if err != nil {
			t.Fatal(err)
		}
		// Any t shares, in any order, rebuild the secret.
		for trial := range 10 {
			pick := rand.New(rand.NewPCG(uint64(trial), 9)).Perm(tc.n)[:tc.t]
			var sub []Share
			for _, i := range pick {
				sub = append(sub, shares[i])
			}
			got, err := Combine(sub, tc.t, len(secret))
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("%d of %d, shares %v: %x, %v", tc.t, tc.n, pick, got, err)
			}
		}
	}
}

// TestShamirHidesWithFewerShares checks the scheme's secrecy: t-1 shares
// are consistent with every secret, for each there is exactly one
// polynomial of degree t-1 through them and that secret, so they say
// nothing of which one was shared.
func TestShamirHidesWithFewerShares(t *testing.T) {
	r := rng(2)
	shares, err := Split([]byte("the real secret"), 3, 5, r)
	if err != nil {
		t.Fatal(err)
	}
	two := shares[:2]
	for _, other := range []string{"another secret!", "", "zzzzzzzzzzzzzzz"} {
		// The point (0, other) and the two shares fix a polynomial; its
		// value anywhere else is a valid third share, and the three rebuild other.
		fake := Share{X: 0, Y: []byte(other)}
		third := Share{X: 4, Y: lagrangeAt(t, append([]Share{fake}, two...), 4)}
		got, err := Combine(append(slices.Clone(two), third), 3, len(other))
		if err != nil || string(got) != other {
			t.Fatalf("two shares and a chosen third rebuild %q, %v; want %q", got, err, other)
		}
	}
	// Shares of two secrets drawn alike are alike: each share's value is a
	// uniform field element, whatever the secret.
	var hi [2]int
	for i := range 2000 {
		sh, _ := Split([]byte{byte(i % 2)}, 2, 2, r)
		if len(sh[0].Y) == 66 && sh[0].Y[0] == 1 {
			hi[i%2]++
		}
	}
	for _, n := range hi { // the top bit of a uniform 521-bit value is set half the time
		if n < 400 || n > 600 {
			t.Errorf("shares' top bits set %v times in 1000 each: not uniform", hi)
		}
	}
}

// lagrangeAt evaluates the polynomial through points at x (a test helper
// independent of Combine's evaluation at 0).
func lagrangeAt(t *testing.T, points []Share, x int64) []byte {
	t.Helper()
	var acc = new(bigInt).set(0)
	for i, pi := range points {
		num, den := new(bigInt).set(1), new(bigInt).set(1)
		for j, pj := range points {
			if i == j {
				continue
			}
			num.mul(new(bigInt).set(x - int64(pj.X)))
			den.mul(new(bigInt).set(int64(pi.X) - int64(pj.X)))
		}
		term := new(bigInt).bytes(pi.Y)
		term.mul(num)
		term.mul(den.inverse())
		acc.add(term)
	}
	return acc.v.Bytes()
}

func TestShamirRefuses(t *testing.T) {
	r := rng(3)
	if _, err := Split(make([]byte, MaxSecret+1), 2, 3, r); err == nil {
		t.Error("a secret over MaxSecret was split")
	}
	for _, tc := range [][2]int{{0, 3}, {4, 3}, {2, 70000}} {
		if _, err := Split([]byte("s"), tc[0], tc[1], r); err == nil {
			t.Errorf("threshold %d of %d accepted", tc[0], tc[1])
		}
	}
	shares, _ := Split([]byte("secret"), 3, 5, r)
	if _, err := Combine(shares[:2], 3, 6); !errors.Is(err, ErrTooFewShares) {
		t.Errorf("two of three: %v", err)
	}
	dup := []Share{shares[0], shares[0], shares[1]}
	if _, err := Combine(dup, 3, 6); !errors.Is(err, ErrBadShare) {
		t.Errorf("a share twice: %v", err)
	}
	zero := []Share{{X: 0, Y: []byte{1}}, shares[1], shares[2]}
	if _, err := Combine(zero, 3, 6); !errors.Is(err, ErrBadShare) {
		t.Errorf("a share at 0: %v", err)
	}
	// A corrupted value rebuilds something else, which is not a 6-byte secret.
	bad := slices.Clone(shares[:3])
	bad[1].Y = append([]byte{}, bad[1].Y...)
	bad[1].Y[5] ^= 1
	if got, err := Combine(bad, 3, 6); err == nil && string(got) == "secret" {
		t.Error("a corrupted share rebuilt the secret")
	}
}

func FuzzCombine(f *testing.F) {
	f.Add([]byte{0, 1, 5, 0, 2, 7, 0, 3, 9}, 2)
	f.Fuzz(func(t *testing.T, b []byte, th int) {
		var shares []Share
		for len(b) >= 3 {
			n := min(int(b[2]), len(b)-3)
			shares = append(shares, Share{X: uint16(b[0])<<8 | uint16(b[1]), Y: b[3 : 3+n]})
			b = b[3+n:]
		}
		out, err := Combine(shares, th%8, 32)
		if err == nil && len(out) != 32 {
			t.Fatalf("%d bytes", len(out))
		}
	})
}

func TestNeighbours(t *testing.T) {
	var seed [32]byte
	for _, tc := range []struct{ n, k int }{{2, 1}, {5, 4}, {10, 4}, {100, 8}, {7, 6}} {
		g := Neighbours(tc.n, tc.k, seed)
		for i, ns := range g {
			if len(ns) != tc.k || slices.Contains(ns, i) {
				t.Fatalf("n %d k %d: client %d has neighbours %v", tc.n, tc.k, i, ns)
			}
			for _, j := range ns {
				if !slices.Contains(g[j], i) {
					t.Fatalf("n %d k %d: %d lists %d, not the other way", tc.n, tc.k, i, j)
				}
			}
		}
	}
	seed[0] = 1
	if slices.Equal(Neighbours(100, 8, seed)[0], Neighbours(100, 8, [32]byte{})[0]) {
		t.Error("two seeds draw the same graph")
	}
}

// round runs one round: every client's vector xs[i], clients in
// beforeMask leave after sharing their keys, those in afterMask after
// sending their vectors. It returns the unmasked sum and the vectors the
// server received.
func round(t *testing.T, cfg Config, xs [][]uint32, beforeMask, afterMask []int) ([]uint32, map[int][]uint32, error) {
	t.Helper()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clients := make([]*Client, cfg.N)
	for i := range clients {
		if clients[i], err = NewClient(cfg, i, rng(uint64(100+i))); err != nil {
			t.Fatal(err)
		}
		if err := srv.AddKeys(clients[i].Advertise()); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients {
		es, err := c.ShareKeys(srv.KeysFor(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddShares(i, es); err != nil {
			t.Fatal(err)
		}
	}
	received := map[int][]uint32{}
	for i, c := range clients {
		if slices.Contains(beforeMask, i) {
			continue
		}
		y, err := c.MaskedInput(xs[i], srv.SharesFor(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddMasked(i, y); err != nil {
			t.Fatal(err)
		}
		received[i] = y
	}
	lists := srv.Close()
	for i, c := range clients {
		if slices.Contains(beforeMask, i) || slices.Contains(afterMask, i) {
			continue
		}
		rs, err := c.Unmask(lists[i])
		if errors.Is(err, ErrAborted) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddReveal(i, rs); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := srv.Sum()
	return sum, received, err
}

// vectors draws n vectors of the ring Z_2^bits (0: 32) and returns them
// with the plain sum, mod 2^bits, of those not skipped.
func vectors(n, length, bits int, seed uint64) ([][]uint32, func(skip []int) []uint32) {
	r := rand.New(rand.NewPCG(seed, 1))
	mask := ringMask(bits)
	xs := make([][]uint32, n)
	for i := range xs {
		xs[i] = make([]uint32, length)
		for k := range xs[i] {
			xs[i][k] = r.Uint32() & mask
		}
	}
	plain := func(skip []int) []uint32 {
		sum := make([]uint32, length)
		for i, x := range xs {
			if slices.Contains(skip, i) {
				continue
			}
			for k, v := range x {
				sum[k] = (sum[k] + v) & mask
			}
		}
		return sum
	}
	return xs, plain
}

// TestRoundSums: the unmasked sum is the plain sum of the vectors sent,
// mod 2^b, exactly, with the masks of dropped clients rebuilt, in every
// ring width.
func TestRoundSums(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		n, k, th              int
		beforeMask, afterMask []int
	}{
		{"everyone, complete graph", 5, 4, 3, nil, nil},
		{"everyone, sparse graph", 20, 6, 4, nil, nil},
		{"dropouts after masking, up to K-T", 20, 6, 4, nil, []int{3, 11}},
		{"dropouts before masking", 20, 6, 4, []int{0, 7}, nil},
		{"both", 12, 6, 4, []int{5}, []int{1}},
		{"two clients", 2, 1, 1, nil, nil},
	} {
		for _, bits := range []int{0, 32, 16, 8} {
			t.Run(fmt.Sprintf("%s/%d bits", tc.name, bits), func(t *testing.T) {
				cfg := Config{N: tc.n, K: tc.k, T: tc.th, Length: 50, Round: []byte("job-1/round-3"), Bits: bits}
				cfg.Seed[0] = 7
				xs, plain := vectors(tc.n, cfg.Length, bits, 1)
				sum, received, err := round(t, cfg, xs, tc.beforeMask, tc.afterMask)
				if err != nil {
					t.Fatal(err)
				}
				if want := plain(tc.beforeMask); !slices.Equal(sum, want) {
					t.Fatalf("sum differs from the plain sum of the vectors sent")
				}
				for id, y := range received {
					for k, v := range y {
						if v&^ringMask(bits) != 0 {
							t.Fatalf("client %d sent value %d = %#x, outside the %d-bit ring", id, k, v, bits)
						}
					}
				}
			})
		}
	}
}

// TestRoundAbortsWithTooManyDropouts: with more than K-T neighbours of a
// client gone after masking, its seed cannot be rebuilt: the round fails and
// the server has only masked vectors.
func TestRoundAbortsWithTooManyDropouts(t *testing.T) {
	cfg := Config{N: 6, K: 4, T: 3, Length: 8, Round: []byte("r")}
	xs, _ := vectors(cfg.N, cfg.Length, 0, 2)
	_, _, err := round(t, cfg, xs, nil, []int{0, 1, 2, 3})
	if !errors.Is(err, ErrAborted) {
		t.Fatalf("Sum = %v, want ErrAborted", err)
	}
}

// TestMaskedVectorsLookUniform: what the server receives of one client is
// its vector plus masks; with the vector all zeros, its bytes must look
// uniform (a chi-square test over byte values, 255 degrees of freedom),
// in a 32-bit ring as in a 16-bit one, which sends the low half of each
// mask word.
func TestMaskedVectorsLookUniform(t *testing.T) {
	for _, bits := range []int{32, 16, 8} {
		cfg := Config{N: 4, K: 3, T: 2, Length: 20000, Round: []byte("u"), Bits: bits}
		xs := make([][]uint32, cfg.N)
		for i := range xs {
			xs[i] = make([]uint32, cfg.Length)
		}
		_, received, err := round(t, cfg, xs, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var counts [256]float64
		for _, v := range received[0] {
			for k := range bits / 8 {
				counts[byte(v>>(8*k))]++
			}
		}
		exp := float64(bits/8*cfg.Length) / 256
		chi := 0.0
		for _, c := range counts {
			chi += (c - exp) * (c - exp) / exp
		}
		// The 99.99th percentile of chi-square with 255 degrees of freedom is about 351.
		if chi > 351 {
			t.Fatalf("%d bits: chi-square %.1f: the masked vector of zeros is not uniform", bits, chi)
		}
		if slices.Equal(received[0], received[1]) {
			t.Fatalf("%d bits: two clients' masked vectors are equal", bits)
		}
	}
}

// TestProtocolViolations: each message out of the protocol is refused.
func TestProtocolViolations(t *testing.T) {
	cfg := Config{N: 6, K: 4, T: 3, Length: 4, Round: []byte("v")}
	srv, _ := NewServer(cfg)
	clients := make([]*Client, cfg.N)
	for i := range clients {
		clients[i], _ = NewClient(cfg, i, rng(uint64(200+i)))
		if err := srv.AddKeys(clients[i].Advertise()); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.AddKeys(clients[0].Advertise()); !errors.Is(err, ErrProtocol) {
		t.Errorf("keys twice: %v", err)
	}
	if err := srv.AddKeys(Keys{ID: 9}); !errors.Is(err, ErrProtocol) {
		t.Errorf("an unknown client: %v", err)
	}
	shares := make([][]EncryptedShare, cfg.N)
	for i, c := range clients {
		shares[i], _ = c.ShareKeys(srv.KeysFor(i))
	}
	// A share addressed to a non-neighbour, or one missing, or twice.
	nonNeighbour := -1
	for j := range cfg.N {
		if j != 0 && !slices.Contains(srv.Neighbours(0), j) {
			nonNeighbour = j
		}
	}
	forged := slices.Clone(shares[0])
	forged[0].To = nonNeighbour
	if err := srv.AddShares(0, forged); !errors.Is(err, ErrProtocol) {
		t.Errorf("a share for a non-neighbour: %v", err)
	}
	if err := srv.AddShares(0, shares[0][1:]); !errors.Is(err, ErrProtocol) {
		t.Errorf("a share missing: %v", err)
	}
	for i := range clients {
		if err := srv.AddShares(i, shares[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.AddShares(0, shares[0]); !errors.Is(err, ErrProtocol) {
		t.Errorf("shares twice: %v", err)
	}
	// A client refuses a share tampered with, or one from a non-neighbour.
	got := srv.SharesFor(1)
	tampered := slices.Clone(got)
	tampered[0].Box = append([]byte{}, tampered[0].Box...)
	tampered[0].Box[3] ^= 1
	c1copy, _ := NewClient(cfg, 1, rng(201))
	c1copy.ShareKeys(srv.KeysFor(1))
	if _, err := c1copy.MaskedInput(make([]uint32, 4), tampered); !errors.Is(err, ErrProtocol) {
		t.Errorf("a tampered share: %v", err)
	}
	y0, err := clients[0].MaskedInput(make([]uint32, 4), srv.SharesFor(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddMasked(0, y0[:3]); !errors.Is(err, ErrProtocol) {
		t.Errorf("a short vector: %v", err)
	}
	if err := srv.AddMasked(0, y0); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddMasked(0, y0); !errors.Is(err, ErrProtocol) {
		t.Errorf("a vector twice: %v", err)
	}
	if _, err := clients[0].MaskedInput(make([]uint32, 4), nil); !errors.Is(err, ErrProtocol) {
		t.Errorf("a second MaskedInput: %v", err)
	}
	for i := 1; i < cfg.N; i++ {
		y, _ := clients[i].MaskedInput(make([]uint32, 4), srv.SharesFor(i))
		srv.AddMasked(i, y)
	}
	lists := srv.Close()
	if err := srv.AddMasked(5, make([]uint32, 4)); !errors.Is(err, ErrProtocol) {
		t.Errorf("a vector after Close: %v", err)
	}
	// A client asked to treat a neighbour as dropped in one list and alive
	// in another answers once only.
	rs, err := clients[2].Unmask(lists[2])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clients[2].Unmask(lists[2][:1]); !errors.Is(err, ErrProtocol) {
		t.Errorf("a second Unmask: %v", err)
	}
	// The server refuses a key share for a client that sent its vector.
	wrong := slices.Clone(rs)
	wrong[0].Seed = false
	if err := srv.AddReveal(2, wrong); !errors.Is(err, ErrProtocol) {
		t.Errorf("a key share of a sender: %v", err)
	}
	if err := srv.AddReveal(2, rs); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddReveal(2, rs); !errors.Is(err, ErrProtocol) {
		t.Errorf("reveals twice: %v", err)
	}
	// A client told it sent nothing, or of a stranger, refuses.
	if _, err := clients[3].Unmask([]int{nonNeighbourOf(srv, 3)}); !errors.Is(err, ErrProtocol) {
		t.Errorf("a list without the client, naming a stranger: %v", err)
	}
}

func nonNeighbourOf(s *Server, id int) int {
	for j := range s.cfg.N {
		if j != id && !slices.Contains(s.Neighbours(id), j) {
			return j
		}
	}
	return id
}

// TestRingRefusals: in a 16-bit round, a client refuses to mask a value
// outside the ring, the server a masked vector with one, and a config of
// another width is refused.
func TestRingRefusals(t *testing.T) {
	cfg := Config{N: 2, K: 1, T: 1, Length: 3, Round: []byte("w"), Bits: 16}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clients := make([]*Client, 2)
	for i := range clients {
		clients[i], _ = NewClient(cfg, i, rng(uint64(300+i)))
		if err := srv.AddKeys(clients[i].Advertise()); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients {
		es, err := c.ShareKeys(srv.KeysFor(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddShares(i, es); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := clients[0].MaskedInput([]uint32{1, 0x10000, 2}, srv.SharesFor(0)); err == nil {
		t.Error("a client masked a value outside the 16-bit ring")
	}
	if err := srv.AddMasked(0, []uint32{1, 0x12345, 2}); !errors.Is(err, ErrProtocol) {
		t.Errorf("a masked value outside the ring: %v", err)
	}
	y, err := clients[0].MaskedInput([]uint32{1, 0xffff, 2}, srv.SharesFor(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddMasked(0, y); err != nil {
		t.Fatal(err)
	}
	for _, bits := range []int{1, 12, 24, 64, -16} {
		bad := cfg
		bad.Bits = bits
		if err := bad.Validate(); err == nil {
			t.Errorf("a %d-bit ring validated", bits)
		}
	}
}

func TestEncoding(t *testing.T) {
	for _, tc := range []struct {
		bits, clients int
		clip          float64
	}{{32, 100, 1}, {0, 100, 1}, {16, 100, 1}, {16, 10, 4}, {8, 2, 1}} {
		e, err := NewEncoding(tc.clip, tc.clients, tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(uint64(tc.bits), 3))
		xs := [][]float32{{0.5, -0.25, 3, -7, 1e-7}, {0.5, 0.25, 0.1, 0.2, 0}}
		sum := make([]uint32, 5)
		for _, x := range xs {
			x = slices.Clone(x)
			for i := range x {
				x[i] *= float32(tc.clip)
			}
			enc, err := e.Encode(x, r)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range enc {
				if v&^ringMask(tc.bits) != 0 {
					t.Fatalf("%d bits: value %d encoded as %#x, outside the ring", tc.bits, i, v)
				}
				sum[i] += v
			}
		}
		got := e.Decode(sum)
		want := []float64{1, 0, 1.1, -0.8, 0} // 3 and -7 clipped to 1 and -1
		step := math.Ldexp(1, -int(e.FracBits))
		for i := range want {
			if math.Abs(got[i]-want[i]*tc.clip) > 2*step {
				t.Errorf("%d bits: value %d: %v, want %v (step %v)", tc.bits, i, got[i], want[i]*tc.clip, step)
			}
		}
		if _, err := e.Encode([]float32{float32(math.NaN())}, r); err == nil {
			t.Errorf("%d bits: NaN encoded", tc.bits)
		}
		if _, err := e.Encode([]float32{float32(math.Inf(1))}, r); err == nil {
			t.Errorf("%d bits: Inf encoded", tc.bits)
		}
		// The worst sums fit: clients times the clip, each rounded away
		// from zero.
		for _, sign := range []float64{-1, 1} {
			worst := make([]uint32, 1)
			for range e.Clients {
				v, _ := e.Encode([]float32{float32(sign * tc.clip)}, r)
				worst[0] += v[0]
			}
			worst[0] &= ringMask(tc.bits)
			if got := e.Decode(worst)[0]; math.Abs(got-sign*tc.clip*float64(e.Clients)) > float64(e.Clients)*step {
				t.Errorf("%d bits: the extreme sum decodes to %v, want %v", tc.bits, got, sign*tc.clip*float64(e.Clients))
			}
		}
	}
	for _, tc := range []struct {
		clip          float64
		clients, bits int
	}{{1e12, 100, 32}, {4, 10000, 16}, {1, 100, 8}, {4, 1, 12}, {0, 10, 16}} {
		_, err := NewEncoding(tc.clip, tc.clients, tc.bits)
		if err == nil {
			t.Errorf("an encoding of %d clients of values up to %v in %d bits", tc.clients, tc.clip, tc.bits)
		}
	}
	if _, err := NewEncoding(4, 10000, 16); err == nil || !strings.Contains(err.Error(), "no fractional bits in a 16-bit ring") {
		t.Errorf("10000 clients of values up to 4 in 16 bits: %v", err)
	}
	e16, _ := NewEncoding(1, 10, 16)
	if _, err := e16.Encode([]float32{0.5}, nil); err == nil {
		t.Error("a 16-bit encoding rounded without randomness")
	}
}

// TestNarrowRingIsUnbiased: the decoded sum of clients' 16-bit encodings
// of values far below the ring's step averages to the true sum, where
// rounding to nearest would lose them; the test is seeded, and its bound
// is six standard errors.
func TestNarrowRingIsUnbiased(t *testing.T) {
	const clients, trials = 10, 20000
	e, err := NewEncoding(4, clients, 16)
	if err != nil {
		t.Fatal(err)
	}
	step := math.Ldexp(1, -int(e.FracBits))
	xs := []float32{0.001, -0.0007, 0.3 * float32(step), 1.7 * float32(step), -2.25 * float32(step)}
	r := rand.New(rand.NewPCG(42, 7))
	mean := make([]float64, len(xs))
	for range trials {
		sum := make([]uint32, len(xs))
		for range clients {
			enc, err := e.Encode(xs, r)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range enc {
				sum[i] += v
			}
		}
		for i := range sum {
			sum[i] &= ringMask(16)
		}
		for i, v := range e.Decode(sum) {
			mean[i] += v / trials
		}
	}
	// One client's rounding error has a standard deviation of at most
	// step/2, the sum's at most sqrt(clients)·step/2.
	se := math.Sqrt(clients) * step / 2 / math.Sqrt(trials)
	for i, x := range xs {
		want := clients * float64(x)
		if d := math.Abs(mean[i] - want); d > 6*se {
			t.Errorf("value %v: the mean decoded sum is %v, want %v (off by %.2g, %.1f standard errors)", x, mean[i], want, d, d/se)
		}
		// Rounding to nearest would be off by clients times the value's
		// distance to the nearest step.
		nearest := clients * math.Round(float64(x)/step) * step
		if math.Abs(nearest-want) > 6*se && math.Abs(mean[i]-nearest) < 6*se {
			t.Errorf("value %v: the sum is the rounding to nearest's", x)
		}
	}
}

// bigInt is arithmetic modulo the field's prime, for the tests' own
// evaluation of polynomials.
type bigInt struct{ v big.Int }

func (b *bigInt) set(x int64) *bigInt {
	b.v.SetInt64(x)
	b.v.Mod(&b.v, prime)
	return b
}

func (b *bigInt) bytes(y []byte) *bigInt {
	b.v.SetBytes(y)
	return b
}

func (b *bigInt) mul(o *bigInt) {
	b.v.Mul(&b.v, &o.v)
	b.v.Mod(&b.v, prime)
}

func (b *bigInt) add(o *bigInt) {
	b.v.Add(&b.v, &o.v)
	b.v.Mod(&b.v, prime)
}

func (b *bigInt) inverse() *bigInt {
	out := &bigInt{}
	out.v.ModInverse(&b.v, prime)
	return out
}
