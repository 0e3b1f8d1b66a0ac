package secagg

import (
	"crypto/ecdh"
	"fmt"
	"io"
	"slices"
)

// Client is one client's side of a round. Its methods are called in
// order: Advertise, ShareKeys, MaskedInput, Unmask; each at most once.
type Client struct {
	cfg        Config
	id         int
	neighbours []int
	c, s       *ecdh.PrivateKey
	seed       [32]byte // the self-mask seed b
	rnd        io.Reader

	keys   map[int]Keys                      // the neighbours', from ShareKeys
	shares map[int]struct{ seed, key Share } // from each neighbour, to reveal
	step   int
}

// NewClient starts client id's side of a round; rnd supplies its keys, its
// self-mask seed and its sharing polynomials (crypto/rand.Reader in use).
func NewClient(cfg Config, id int, rnd io.Reader) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if id < 0 || id >= cfg.N {
		return nil, fmt.Errorf("secagg: client %d of %d", id, cfg.N)
	}
	cl := &Client{cfg: cfg, id: id, neighbours: Neighbours(cfg.N, cfg.K, cfg.Seed)[id], rnd: rnd}
	var err error
	if cl.c, err = randomKey(rnd); err != nil {
		return nil, err
	}
	if cl.s, err = randomKey(rnd); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rnd, cl.seed[:]); err != nil {
		return nil, fmt.Errorf("secagg: randomness: %w", err)
	}
	return cl, nil
}

// Advertise returns the client's public keys.
func (cl *Client) Advertise() Keys {
	return Keys{ID: cl.id, C: cl.c.PublicKey().Bytes(), S: cl.s.PublicKey().Bytes()}
}

// ShareKeys takes its neighbours' public keys (as the server relays them)
// and returns, for each neighbour, its shares of the client's self-mask
// seed and mask key, encrypted for that neighbour. Every neighbour's keys
// are needed: a client that cannot reach all its neighbours drops out
// here.
func (cl *Client) ShareKeys(keys []Keys) ([]EncryptedShare, error) {
	if cl.step != 0 {
		return nil, violation("ShareKeys called out of order")
	}
	cl.keys = map[int]Keys{}
	for _, k := range keys {
		if slices.Contains(cl.neighbours, k.ID) {
			cl.keys[k.ID] = k
		}
	}
	if len(cl.keys) != len(cl.neighbours) {
		return nil, fmt.Errorf("%w: keys of %d of %d neighbours", ErrAborted, len(cl.keys), len(cl.neighbours))
	}
	k := len(cl.neighbours)
	seedShares, err := Split(cl.seed[:], cl.cfg.T, k, cl.rnd)
	if err != nil {
		return nil, err
	}
	keyShares, err := Split(cl.s.Bytes(), cl.cfg.T, k, cl.rnd)
	if err != nil {
		return nil, err
	}
	out := make([]EncryptedShare, 0, k)
	for n, j := range cl.neighbours {
		key, err := cl.boxKey(j)
		if err != nil {
			return nil, err
		}
		box, err := seal(key, cl.id, j, encodeSharePair(seedShares[n], keyShares[n]))
		if err != nil {
			return nil, err
		}
		out = append(out, EncryptedShare{From: cl.id, To: j, Box: box})
	}
	cl.step = 1
	return out, nil
}

// boxKey is the key of the share messages between the client and j.
func (cl *Client) boxKey(j int) ([32]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(cl.keys[j].C)
	if err != nil {
		return [32]byte{}, violation("client %d's encryption key: %v", j, err)
	}
	shared, err := cl.c.ECDH(pub)
	if err != nil {
		return [32]byte{}, violation("key agreement with %d: %v", j, err)
	}
	return derive(shared, "share", cl.cfg.Round, cl.id, j)
}

// MaskedInput takes the shares the client's neighbours sent it and returns
// x, its fixed-point vector (Encode) of values below 2^b, masked in Z_2^b.
// A share that does not open, is not meant for the client, comes from a
// non-neighbour or twice, is refused, and the client sends nothing; so is
// a value outside the ring.
func (cl *Client) MaskedInput(x []uint32, received []EncryptedShare) ([]uint32, error) {
	if cl.step != 1 {
		return nil, violation("MaskedInput called out of order")
	}
	if len(x) != cl.cfg.Length {
		return nil, fmt.Errorf("secagg: a vector of %d values, the round sums %d", len(x), cl.cfg.Length)
	}
	mask := cl.cfg.mask()
	for i, v := range x {
		if v&^mask != 0 {
			return nil, fmt.Errorf("secagg: value %d is %#x, outside the round's %d-bit ring", i, v, bitsOf(cl.cfg.Bits))
		}
	}
	cl.shares = map[int]struct{ seed, key Share }{}
	for _, es := range received {
		if es.To != cl.id || !slices.Contains(cl.neighbours, es.From) {
			return nil, violation("a share from %d to %d reached client %d", es.From, es.To, cl.id)
		}
		if _, dup := cl.shares[es.From]; dup {
			return nil, violation("two shares from %d", es.From)
		}
		key, err := cl.boxKey(es.From)
		if err != nil {
			return nil, err
		}
		plain, err := open(key, es.From, cl.id, es.Box)
		if err != nil {
			return nil, violation("the share from %d does not open: %v", es.From, err)
		}
		seed, keyShare, err := decodeSharePair(plain)
		if err != nil {
			return nil, violation("the share from %d: %v", es.From, err)
		}
		cl.shares[es.From] = struct{ seed, key Share }{seed, keyShare}
	}
	y := prg(cl.seed, cl.cfg.Round, cl.cfg.Length)
	for i, v := range x {
		y[i] += v
	}
	for _, j := range cl.neighbours {
		pub, err := ecdh.X25519().NewPublicKey(cl.keys[j].S)
		if err != nil {
			return nil, violation("client %d's mask key: %v", j, err)
		}
		m, err := pairMask(cl.s, pub, cl.cfg.Round, cl.id, j, cl.cfg.Length)
		if err != nil {
			return nil, err
		}
		for i := range y {
			y[i] += m[i]
		}
	}
	for i := range y {
		y[i] &= mask
	}
	cl.step = 2
	return y, nil
}

// Unmask takes the neighbours the server says sent their vectors (sent)
// and returns, for each neighbour whose shares the client holds, the share
// of its self-mask seed if it sent, else of its mask key. It refuses a
// list naming a non-neighbour, or fewer than T senders among the client's
// neighbours and itself; called once only, so that no neighbour's two
// secrets can be drawn from it.
func (cl *Client) Unmask(sent []int) ([]Reveal, error) {
	if cl.step != 2 {
		return nil, violation("Unmask called out of order, or twice")
	}
	cl.step = 3
	alive := map[int]bool{}
	for _, j := range sent {
		if j != cl.id && !slices.Contains(cl.neighbours, j) {
			return nil, violation("the server names %d, not a neighbour of %d", j, cl.id)
		}
		alive[j] = true
	}
	if !alive[cl.id] {
		return nil, violation("the server says client %d sent nothing", cl.id)
	}
	if len(alive) < cl.cfg.T {
		return nil, fmt.Errorf("%w: %d senders among client %d and its neighbours, fewer than %d", ErrAborted, len(alive), cl.id, cl.cfg.T)
	}
	var out []Reveal
	for _, j := range cl.neighbours {
		sh, ok := cl.shares[j]
		if !ok {
			continue
		}
		if alive[j] {
			out = append(out, Reveal{Of: j, Seed: true, Share: sh.seed})
		} else {
			out = append(out, Reveal{Of: j, Seed: false, Share: sh.key})
		}
	}
	return out, nil
}

// encodeSharePair packs two shares: X, then each value's length and bytes.
func encodeSharePair(a, b Share) []byte {
	out := []byte{byte(a.X >> 8), byte(a.X), byte(b.X >> 8), byte(b.X)}
	for _, s := range []Share{a, b} {
		out = append(out, byte(len(s.Y)))
		out = append(out, s.Y...)
	}
	return out
}

// decodeSharePair is encodeSharePair's inverse.
func decodeSharePair(p []byte) (Share, Share, error) {
	if len(p) < 5 {
		return Share{}, Share{}, fmt.Errorf("%d bytes", len(p))
	}
	a := Share{X: uint16(p[0])<<8 | uint16(p[1])}
	b := Share{X: uint16(p[2])<<8 | uint16(p[3])}
	rest := p[4:]
	for _, s := range []*Share{&a, &b} {
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 {
			return Share{}, Share{}, fmt.Errorf("truncated share")
		}
		n := int(rest[0])
		s.Y, rest = append([]byte(nil), rest[1:1+n]...), rest[1+n:]
	}
	if len(rest) != 0 || a.X != b.X {
		return Share{}, Share{}, fmt.Errorf("malformed share pair")
	}
	return a, b, nil
}
