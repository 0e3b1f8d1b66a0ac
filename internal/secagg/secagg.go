// Package secagg is secure aggregation after SecAgg+ (Bell, Bonawitz,
// Gascón, Lepoint, Raykova: "Secure Single-Server Aggregation with
// (Poly)Logarithmic Overhead", CCS 2020): a server learns the sum of the
// clients' vectors and nothing else of any one of them, and the sum still
// comes out when up to K - T clients drop out after sending their masked
// vector.
//
// One round, for N clients with ids 0 to N-1:
//
//  1. Each client makes two X25519 key pairs, c (to encrypt the shares it
//     sends) and s (to agree pairwise masks), and advertises the public
//     halves (Client.Advertise; Server.AddKeys).
//  2. Each client is a neighbour of K others on a random graph (a Harary
//     graph on a permutation drawn from the round's seed: Neighbours). It
//     draws a self-mask seed b, splits b and its s private key T-of-K with
//     Shamir's scheme among its neighbours, and sends each neighbour its
//     shares encrypted for it (AES-GCM under a key agreed with c), through
//     the server (Client.ShareKeys; Server.AddShares, Server.SharesFor).
//  3. Each client sends y = x + PRG(b) + sum over neighbours j of
//     ±PRG(s_ij), all in Z_2^b (x fixed-point encoded: Encode), where s_ij
//     is agreed from its s key and j's, and the sign is + when its id is
//     below j's: the pairwise masks of two clients cancel in the sum
//     (Client.MaskedInput; Server.AddMasked).
//  4. The server closes the round to new vectors (Server.Close) and tells
//     each client which neighbours sent one; each client reveals, for each
//     neighbour, the share of b if it sent, or the share of s if it did not,
//     never both (Client.Unmask; Server.AddReveal).
//  5. From T shares each, the server rebuilds the b of every client that
//     sent and the s key of every neighbour that did not, removes their
//     masks, and has the sum (Server.Sum). With fewer than T shares for any
//     of them the round fails, having revealed nothing but masked vectors.
//
// The ring's width b is the round's (Config.Bits): 32, or 16 or 8 to send
// fewer bytes per value where the clients' number and range leave enough
// fixed-point precision (NewEncoding). Masks and sums are computed in
// uint32 arithmetic and reduced mod 2^b: 2^b divides 2^32, so the
// reduction commutes with every sum and difference, and the low b bits of
// a uniform word are uniform in Z_2^b, so a masked vector hides its input
// as well in a narrow ring as in a wide one.
//
// The package is pure: no I/O, randomness from the caller, messages as
// values, so the round's transport (the hub's desired state one way, the
// agent's outbox the other) and its timing live elsewhere.
package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/chacha20"
)

// Config is one round's parameters, the same at every client and the
// server.
type Config struct {
	// N is the number of clients; K how many neighbours each has (even, at
	// most N-1; N-1 makes every client a neighbour of every other, as in the
	// original SecAgg); T how many of a client's neighbours must take part
	// in unmasking to rebuild its secrets (at least K/2+1, so that a server
	// cannot rebuild both secrets of a client from two disjoint halves).
	N, K, T int
	// Length is the length of the vectors summed.
	Length int
	// Round separates the keys and masks of one round from another's.
	Round []byte
	// Seed draws the neighbour graph.
	Seed [32]byte
	// Bits is the ring's width b: vectors are of Z_2^b, each value below
	// 2^b (0: 32; or 16, 8).
	Bits int
}

// mask is 2^b - 1.
func (c *Config) mask() uint32 { return ringMask(c.Bits) }

// Validate checks the parameters.
func (c *Config) Validate() error {
	switch {
	case c.N < 2 || c.N > 65535:
		return fmt.Errorf("secagg: %d clients: want 2 to 65535", c.N)
	case c.K < 1 || c.K > c.N-1 || (c.K != c.N-1 && c.K%2 != 0):
		return fmt.Errorf("secagg: %d neighbours of %d clients: want an even number below %d, or %d", c.K, c.N, c.N-1, c.N-1)
	case c.T < c.K/2+1 || c.T > c.K:
		return fmt.Errorf("secagg: threshold %d of %d neighbours: want %d to %d", c.T, c.K, c.K/2+1, c.K)
	case c.Length < 1:
		return fmt.Errorf("secagg: vectors of length %d", c.Length)
	case c.Bits != 0:
		return checkBits(c.Bits)
	}
	return nil
}

// Neighbours returns each client's neighbours, sorted: a Harary graph
// H(K, N) on a permutation of the clients drawn from seed, in which client
// at position p is a neighbour of those at positions p±1 ... p±K/2.
func Neighbours(n, k int, seed [32]byte) [][]int {
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	words := prg(seed, []byte("outpost secagg graph"), n)
	for i := n - 1; i > 0; i-- { // Fisher–Yates
		j := int(uint64(words[i]) * uint64(i+1) >> 32)
		perm[i], perm[j] = perm[j], perm[i]
	}
	out := make([][]int, n)
	for p, id := range perm {
		set := map[int]bool{}
		if k >= n-1 {
			for q := range n {
				if q != p {
					set[perm[q]] = true
				}
			}
		} else {
			for d := 1; d <= k/2; d++ {
				set[perm[(p+d)%n]] = true
				set[perm[(p-d+n)%n]] = true
			}
		}
		for j := range set {
			out[id] = append(out[id], j)
		}
		slices.Sort(out[id])
	}
	return out
}

// prg returns n words of the ChaCha20 key stream under key, with a nonce
// derived from label: masks of the same seed for different uses differ.
func prg(key [32]byte, label []byte, n int) []uint32 {
	nonce := sha256.Sum256(label)
	s, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:chacha20.NonceSize])
	if err != nil {
		panic(err) // the key and nonce sizes are right by construction
	}
	buf := make([]byte, 4*n)
	s.XORKeyStream(buf, buf)
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(buf[4*i:])
	}
	return out
}

// derive is HKDF-SHA256 of an X25519 shared secret for purpose, bound to
// the round and the two clients (lower id first).
func derive(secret []byte, purpose string, round []byte, a, b int) ([32]byte, error) {
	if a > b {
		a, b = b, a
	}
	info := fmt.Appendf(nil, "outpost secagg %s %d %d ", purpose, a, b)
	info = append(info, round...)
	k, err := hkdf.Key(sha256.New, secret, nil, string(info), 32)
	var out [32]byte
	copy(out[:], k)
	return out, err
}

// pairMask is the mask client i adds for its neighbour j: +PRG(s_ij) when
// i < j, -PRG(s_ij) otherwise.
func pairMask(sKey *ecdh.PrivateKey, peer *ecdh.PublicKey, round []byte, i, j, length int) ([]uint32, error) {
	shared, err := sKey.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("secagg: key agreement with %d: %w", j, err)
	}
	seed, err := derive(shared, "mask", round, i, j)
	if err != nil {
		return nil, err
	}
	m := prg(seed, round, length)
	if i > j {
		for k := range m {
			m[k] = -m[k]
		}
	}
	return m, nil
}

// Keys are the public keys a client advertises.
type Keys struct {
	ID int
	// C encrypts the shares sent to the client; S agrees its pairwise masks.
	C, S []byte
}

// EncryptedShare carries, from client From to client To, its shares of
// From's self-mask seed and mask key, encrypted for To.
type EncryptedShare struct {
	From, To int
	Box      []byte
}

// Reveal is a share a client gives the server in unmasking: of the
// self-mask seed of Of (which sent its vector) or of its mask key (when it
// did not).
type Reveal struct {
	Of   int
	Seed bool // the share is of Of's self-mask seed, else of its mask key
	Share
}

// Errors of a round.
var (
	ErrProtocol = errors.New("secagg: protocol violation")
	ErrAborted  = errors.New("secagg: round aborted")
)

func violation(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// shareAEAD is the cipher of the share messages under key. Each key
// belongs to one pair of clients and one round and seals one message, so
// the nonce is zero; the message's direction is its associated data.
func shareAEAD(key [32]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts a share message for a neighbour.
func seal(key [32]byte, from, to int, plain []byte) ([]byte, error) {
	g, err := shareAEAD(key)
	if err != nil {
		return nil, err
	}
	return g.Seal(nil, make([]byte, g.NonceSize()), plain, fmt.Appendf(nil, "%d>%d", from, to)), nil
}

// open decrypts a share message.
func open(key [32]byte, from, to int, box []byte) ([]byte, error) {
	g, err := shareAEAD(key)
	if err != nil {
		return nil, err
	}
	return g.Open(nil, make([]byte, g.NonceSize()), box, fmt.Appendf(nil, "%d>%d", from, to))
}

// randomKey draws an X25519 private key from rnd.
func randomKey(rnd io.Reader) (*ecdh.PrivateKey, error) {
	var b [32]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return nil, fmt.Errorf("secagg: randomness: %w", err)
	}
	return ecdh.X25519().NewPrivateKey(b[:])
}
