package secagg

import (
	"errors"
	"fmt"
	"io"
	"math/big"
)

// prime is the field of the secret sharing: the Mersenne prime 2^521 - 1,
// larger than any 64-byte secret, so a secret is one field element.
var prime = func() *big.Int {
	p := new(big.Int).Lsh(big.NewInt(1), 521)
	return p.Sub(p, big.NewInt(1))
}()

// MaxSecret is the longest secret Split shares, in bytes.
const MaxSecret = 64

// Share is one share of a secret: the value at X of the sharing polynomial.
type Share struct {
	// X is the share's point, 1 to 65535; Y the polynomial's value there,
	// big-endian, below the field's prime.
	X uint16
	Y []byte
}

// Split shares secret among n holders, any t of whom can rebuild it and
// fewer of whom learn nothing of it (Shamir's scheme over GF(2^521 - 1)):
// share i, for i from 0, is the value at X = i + 1 of a random polynomial
// of degree t - 1 whose value at 0 is the secret. rnd supplies the
// coefficients (crypto/rand.Reader in use; a fixed stream in tests).
func Split(secret []byte, t, n int, rnd io.Reader) ([]Share, error) {
	if len(secret) > MaxSecret {
		return nil, fmt.Errorf("secagg: a secret of %d bytes, at most %d", len(secret), MaxSecret)
	}
	if t < 1 || n < t || n > 65535 {
		return nil, fmt.Errorf("secagg: threshold %d of %d holders: want 1 <= t <= n <= 65535", t, n)
	}
	coef := make([]*big.Int, t)
	coef[0] = new(big.Int).SetBytes(secret)
	for i := 1; i < t; i++ {
		c, err := randomElement(rnd)
		if err != nil {
			return nil, err
		}
		coef[i] = c
	}
	shares := make([]Share, n)
	for i := range shares {
		x := big.NewInt(int64(i + 1))
		y := new(big.Int)
		for k := t - 1; k >= 0; k-- { // Horner
			y.Mul(y, x)
			y.Add(y, coef[k])
			y.Mod(y, prime)
		}
		shares[i] = Share{X: uint16(i + 1), Y: y.Bytes()}
	}
	return shares, nil
}

// randomElement draws a uniform field element from rnd.
func randomElement(rnd io.Reader) (*big.Int, error) {
	buf := make([]byte, 66) // 528 bits, masked to 521, drawn again when >= prime
	for {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return nil, fmt.Errorf("secagg: randomness: %w", err)
		}
		buf[0] &= 0x01
		v := new(big.Int).SetBytes(buf)
		if v.Cmp(prime) < 0 {
			return v, nil
		}
	}
}

// Errors of Combine.
var (
	ErrTooFewShares = errors.New("secagg: fewer shares than the threshold")
	ErrBadShare     = errors.New("secagg: malformed share")
)

// Combine rebuilds a secret of size bytes from t or more shares of it
// (Lagrange interpolation at 0 over the first t shares). Shares with the
// same X, X = 0, or values outside the field are refused; wrong values
// give a wrong secret, which callers detect (a commitment, a digest).
func Combine(shares []Share, t, size int) ([]byte, error) {
	if t < 1 || size < 0 || size > MaxSecret {
		return nil, fmt.Errorf("secagg: threshold %d, secret of %d bytes", t, size)
	}
	if len(shares) < t {
		return nil, fmt.Errorf("%w: %d of %d", ErrTooFewShares, len(shares), t)
	}
	use := shares[:t]
	xs := make([]*big.Int, t)
	ys := make([]*big.Int, t)
	seen := map[uint16]bool{}
	for i, s := range use {
		if s.X == 0 || seen[s.X] || len(s.Y) > 66 {
			return nil, fmt.Errorf("%w: point %d", ErrBadShare, s.X)
		}
		seen[s.X] = true
		xs[i] = big.NewInt(int64(s.X))
		ys[i] = new(big.Int).SetBytes(s.Y)
		if ys[i].Cmp(prime) >= 0 {
			return nil, fmt.Errorf("%w: value outside the field", ErrBadShare)
		}
	}
	secret := new(big.Int)
	for i := range use {
		// l_i(0) = prod_{j != i} x_j / (x_j - x_i)
		num, den := big.NewInt(1), big.NewInt(1)
		for j := range use {
			if j == i {
				continue
			}
			num.Mul(num, xs[j])
			num.Mod(num, prime)
			d := new(big.Int).Sub(xs[j], xs[i])
			den.Mul(den, d.Mod(d, prime))
			den.Mod(den, prime)
		}
		term := new(big.Int).Mul(ys[i], num)
		term.Mul(term, new(big.Int).ModInverse(den, prime))
		secret.Add(secret, term)
		secret.Mod(secret, prime)
	}
	if secret.BitLen() > 8*size {
		return nil, fmt.Errorf("secagg: the shares do not rebuild a %d-byte secret (wrong or mixed shares)", size)
	}
	return secret.FillBytes(make([]byte, size)), nil
}
