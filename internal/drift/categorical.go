package drift

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// MaxClasses bounds the number of classes a Categorical counts apart.
const MaxClasses = 4096

// Categorical summarises a categorical feature, such as a predicted class:
// a count for each class code 0 … Classes-1, one count for every other
// code (negative, too large, or not an integer: the "other" bucket), and a
// count of invalid values (NaN, ±Inf) that are in no bucket. Merge of two
// summaries equals the summary of the union, exactly. A Categorical is not
// safe for concurrent use.
type Categorical struct {
	counts  []uint64
	other   uint64
	invalid uint64
}

// NewCategorical returns an empty summary counting classes 0 … classes-1
// apart, for 1 ≤ classes ≤ MaxClasses.
func NewCategorical(classes int) (*Categorical, error) {
	if classes < 1 || classes > MaxClasses {
		return nil, fmt.Errorf("categorical: %d classes, want 1 to %d", classes, MaxClasses)
	}
	return &Categorical{counts: make([]uint64, classes)}, nil
}

// Add counts one value of class code c.
func (c *Categorical) Add(code int) {
	if code >= 0 && code < len(c.counts) {
		c.counts[code]++
		return
	}
	c.other++
}

// AddValue counts a class code given as a number (an element of an input
// tensor): NaN and ±Inf count as invalid, non-integers as other.
func (c *Categorical) AddValue(x float64) {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		c.invalid++
	case x != math.Trunc(x) || x < 0 || x >= float64(len(c.counts)):
		c.other++
	default:
		c.counts[int(x)]++
	}
}

// AddInvalid counts one invalid value, such as the predicted class of an
// output with NaN.
func (c *Categorical) AddInvalid() { c.invalid++ }

// Classes returns the number of classes counted apart.
func (c *Categorical) Classes() int { return len(c.counts) }

// Counts returns a copy of the per-class counts.
func (c *Categorical) Counts() []uint64 { return slices.Clone(c.counts) }

// Other returns the count of the other bucket.
func (c *Categorical) Other() uint64 { return c.other }

// Invalid returns the count of invalid values.
func (c *Categorical) Invalid() uint64 { return c.invalid }

// Count returns the number of valid values: the classes' and other's
// counts.
func (c *Categorical) Count() uint64 {
	t := c.other
	for _, n := range c.counts {
		t += n
	}
	return t
}

// Total returns the number of values added, valid or not.
func (c *Categorical) Total() uint64 { return c.Count() + c.invalid }

// Buckets returns the counts as float64, the classes' then other's: the
// categories the tests compare.
func (c *Categorical) Buckets() []float64 {
	b := make([]float64, len(c.counts)+1)
	for i, n := range c.counts {
		b[i] = float64(n)
	}
	b[len(c.counts)] = float64(c.other)
	return b
}

// Merge adds the values summarised by o to c; both must count the same
// classes.
func (c *Categorical) Merge(o *Categorical) error {
	if len(c.counts) != len(o.counts) {
		return fmt.Errorf("categorical: cannot merge %d classes into %d", len(o.counts), len(c.counts))
	}
	for i, n := range o.counts {
		c.counts[i] += n
	}
	c.other += o.other
	c.invalid += o.invalid
	return nil
}

// Clone returns a deep copy of c.
func (c *Categorical) Clone() *Categorical {
	return &Categorical{counts: slices.Clone(c.counts), other: c.other, invalid: c.invalid}
}

// Empty returns an empty summary of the same classes.
func (c *Categorical) Empty() *Categorical {
	return &Categorical{counts: make([]uint64, len(c.counts))}
}

func (c *Categorical) validate() error {
	if len(c.counts) < 1 || len(c.counts) > MaxClasses {
		return fmt.Errorf("%d classes, want 1 to %d", len(c.counts), MaxClasses)
	}
	t := c.other
	for _, n := range c.counts {
		if t+n < t {
			return errors.New("counts overflow")
		}
		t += n
	}
	if t+c.invalid < t {
		return errors.New("counts overflow")
	}
	return nil
}
