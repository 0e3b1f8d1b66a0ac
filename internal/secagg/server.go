package secagg

import (
	"crypto/ecdh"
	"fmt"
	"slices"
)

// Server is the server's side of a round: it relays keys and shares,
// collects masked vectors, and unmasks their sum. Calls that break the
// protocol are refused with ErrProtocol and change nothing.
type Server struct {
	cfg        Config
	neighbours [][]int
	keys       map[int]Keys
	shares     map[int][]EncryptedShare // by recipient
	sharedBy   map[int]bool
	masked     map[int][]uint32
	closed     bool
	sent       []int                  // the clients whose vectors count, once closed
	reveals    map[int]map[int]Reveal // by revealing client, then by the client revealed
}

// NewServer starts the server's side of a round.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, neighbours: Neighbours(cfg.N, cfg.K, cfg.Seed), keys: map[int]Keys{},
		shares: map[int][]EncryptedShare{}, sharedBy: map[int]bool{}, masked: map[int][]uint32{},
		reveals: map[int]map[int]Reveal{}}, nil
}

// Neighbours returns client id's neighbours.
func (s *Server) Neighbours(id int) []int { return slices.Clone(s.neighbours[id]) }

func (s *Server) known(id int) error {
	if id < 0 || id >= s.cfg.N {
		return violation("no client %d in a round of %d", id, s.cfg.N)
	}
	return nil
}

// AddKeys records a client's advertised keys; a client advertises once.
func (s *Server) AddKeys(k Keys) error {
	if err := s.known(k.ID); err != nil {
		return err
	}
	if _, dup := s.keys[k.ID]; dup {
		return violation("client %d advertised its keys twice", k.ID)
	}
	for _, b := range [][]byte{k.C, k.S} {
		if _, err := ecdh.X25519().NewPublicKey(b); err != nil {
			return violation("client %d's keys: %v", k.ID, err)
		}
	}
	s.keys[k.ID] = k
	return nil
}

// KeysFor returns the advertised keys of client id's neighbours.
func (s *Server) KeysFor(id int) []Keys {
	var out []Keys
	for _, j := range s.neighbours[id] {
		if k, ok := s.keys[j]; ok {
			out = append(out, k)
		}
	}
	return out
}

// AddShares records the encrypted shares client from sends its neighbours:
// one for each, from it, to a neighbour, once.
func (s *Server) AddShares(from int, shares []EncryptedShare) error {
	if err := s.known(from); err != nil {
		return err
	}
	if s.sharedBy[from] {
		return violation("client %d sent its shares twice", from)
	}
	if _, ok := s.keys[from]; !ok {
		return violation("client %d sent shares without advertising keys", from)
	}
	to := map[int]bool{}
	for _, es := range shares {
		if es.From != from || !slices.Contains(s.neighbours[from], es.To) || to[es.To] {
			return violation("client %d sent a share from %d to %d", from, es.From, es.To)
		}
		to[es.To] = true
	}
	if len(to) != len(s.neighbours[from]) {
		return violation("client %d sent shares to %d of its %d neighbours", from, len(to), len(s.neighbours[from]))
	}
	for _, es := range shares {
		s.shares[es.To] = append(s.shares[es.To], es)
	}
	s.sharedBy[from] = true
	return nil
}

// SharesFor returns the shares sent to client id.
func (s *Server) SharesFor(id int) []EncryptedShare { return slices.Clone(s.shares[id]) }

// AddMasked records client id's masked vector, before Close only; a client
// that did not share its keys cannot take part, and a value outside the
// round's ring is refused.
func (s *Server) AddMasked(id int, y []uint32) error {
	if err := s.known(id); err != nil {
		return err
	}
	switch {
	case s.closed:
		return violation("client %d's vector came after the round closed", id)
	case !s.sharedBy[id]:
		return violation("client %d sent a vector without sharing its keys", id)
	case len(y) != s.cfg.Length:
		return violation("client %d sent %d values, the round sums %d", id, len(y), s.cfg.Length)
	}
	if _, dup := s.masked[id]; dup {
		return violation("client %d sent its vector twice", id)
	}
	mask := s.cfg.mask()
	for i, v := range y {
		if v&^mask != 0 {
			return violation("client %d's value %d is %#x, outside the round's %d-bit ring", id, i, v, bitsOf(s.cfg.Bits))
		}
	}
	s.masked[id] = slices.Clone(y)
	return nil
}

// Close ends the collection of vectors and returns, for each client that
// sent one, the list it is told in unmasking: the senders among it and its
// neighbours.
func (s *Server) Close() map[int][]int {
	s.closed = true
	s.sent = s.sent[:0]
	for id := range s.masked {
		s.sent = append(s.sent, id)
	}
	slices.Sort(s.sent)
	out := map[int][]int{}
	for _, id := range s.sent {
		list := []int{id}
		for _, j := range s.neighbours[id] {
			if _, ok := s.masked[j]; ok {
				list = append(list, j)
			}
		}
		slices.Sort(list)
		out[id] = list
	}
	return out
}

// AddReveal records the shares client from reveals in unmasking: only for
// its neighbours, of the seed of those that sent and of the key of those
// that did not, once each.
func (s *Server) AddReveal(from int, rs []Reveal) error {
	if err := s.known(from); err != nil {
		return err
	}
	if !s.closed {
		return violation("client %d revealed shares before the round closed", from)
	}
	if _, ok := s.masked[from]; !ok {
		return violation("client %d, which sent no vector, revealed shares", from)
	}
	if _, dup := s.reveals[from]; dup {
		return violation("client %d revealed twice", from)
	}
	got := map[int]Reveal{}
	for _, r := range rs {
		_, sent := s.masked[r.Of]
		if !slices.Contains(s.neighbours[from], r.Of) || r.Seed != sent {
			return violation("client %d revealed a share of %d (seed %v) that the round does not ask of it", from, r.Of, r.Seed)
		}
		if _, dup := got[r.Of]; dup {
			return violation("client %d revealed two shares of %d", from, r.Of)
		}
		got[r.Of] = r
	}
	s.reveals[from] = got
	return nil
}

// Sum unmasks the sum of the vectors sent, once at least T neighbours of
// every client concerned revealed their shares; before that it fails with
// ErrAborted, saying which client lacks shares, and reveals nothing.
func (s *Server) Sum() ([]uint32, error) {
	if !s.closed {
		return nil, violation("Sum before Close")
	}
	if len(s.sent) == 0 {
		return nil, fmt.Errorf("%w: no client sent a vector", ErrAborted)
	}
	sharesOf := func(j int, seed bool) []Share {
		var out []Share
		for _, from := range s.neighbours[j] {
			if r, ok := s.reveals[from][j]; ok && r.Seed == seed {
				out = append(out, r.Share)
			}
		}
		return out
	}
	sum := make([]uint32, s.cfg.Length)
	for _, id := range s.sent {
		for i, v := range s.masked[id] {
			sum[i] += v
		}
	}
	for _, id := range s.sent {
		shares := sharesOf(id, true)
		if len(shares) < s.cfg.T {
			return nil, fmt.Errorf("%w: %d shares of client %d's self-mask seed, %d needed", ErrAborted, len(shares), id, s.cfg.T)
		}
		seed, err := Combine(shares, s.cfg.T, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: client %d's seed: %v", ErrAborted, id, err)
		}
		for i, v := range prg([32]byte(seed), s.cfg.Round, s.cfg.Length) {
			sum[i] -= v
		}
	}
	// Senders' masks with neighbours that sent nothing do not cancel:
	// rebuild those neighbours' keys and take the masks out.
	for j := range s.cfg.N {
		if _, sent := s.masked[j]; sent || !s.sharedBy[j] {
			continue
		}
		var live []int
		for _, i := range s.neighbours[j] {
			if _, ok := s.masked[i]; ok {
				live = append(live, i)
			}
		}
		if len(live) == 0 {
			continue
		}
		shares := sharesOf(j, false)
		if len(shares) < s.cfg.T {
			return nil, fmt.Errorf("%w: %d shares of dropped client %d's mask key, %d needed", ErrAborted, len(shares), j, s.cfg.T)
		}
		raw, err := Combine(shares, s.cfg.T, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: client %d's key: %v", ErrAborted, j, err)
		}
		key, err := ecdh.X25519().NewPrivateKey(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: client %d's key: %v", ErrAborted, j, err)
		}
		if pub := key.PublicKey().Bytes(); string(pub) != string(s.keys[j].S) {
			return nil, fmt.Errorf("%w: the shares of client %d's key rebuild another key", ErrAborted, j)
		}
		for _, i := range live {
			peer, err := ecdh.X25519().NewPublicKey(s.keys[i].S)
			if err != nil {
				return nil, err
			}
			// Client i added its mask for j; j's view of the pair is its negation.
			m, err := pairMask(key, peer, s.cfg.Round, j, i, s.cfg.Length)
			if err != nil {
				return nil, err
			}
			for k := range sum {
				sum[k] += m[k]
			}
		}
	}
	mask := s.cfg.mask()
	for k := range sum {
		sum[k] &= mask
	}
	return sum, nil
}
