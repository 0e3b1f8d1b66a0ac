package versions

import (
	"regexp"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"
)

// parserAccepts reports whether the parsers behind Validate, without
// ConstraintPattern, take s: an exact version or a Masterminds range.
func parserAccepts(s string) bool {
	if _, ok := exact(s); ok {
		return true
	}
	_, err := semver.NewConstraint(s)
	return err == nil
}

// patternAccepts is what the apiserver checks of spec.model.version: the
// pattern and the length bound.
func patternAccepts(s string) bool {
	return len(s) <= MaxConstraintLen && apiserverPattern.MatchString(s)
}

// apiserverPattern is ConstraintPattern compiled here, apart from the package's.
var apiserverPattern = regexp.MustCompile(ConstraintPattern)

var constraintTable = []struct {
	c  string
	ok bool
}{
	{"1.2.3", true},
	{"=1.2.3", true},
	{"= 1.2.3", true},
	{" 1.2.3 ", true},
	{"1.2.3-rc.1", true},
	{"1.2.3-rc.1+build.7", true},
	{"1.2.3-0", true},
	{">=1.2 <2", true},
	{">= 1.2, < 2", true},
	{">=1.0, <2.0", true},
	{"^1.2", true},
	{"~1.2.3", true},
	{"~>1.2", true},
	{"!=1.3.0", true},
	{"1.x", true},
	{"1.2.X", true},
	{"*", true},
	{"1.2 - 1.4.5", true},
	{">=1.0 || >=2.0", true},
	{">=1.3.0-rc.0 <1.4", true},
	{"9999999999999999.0.0", true},
	{strings.Repeat("1||", 31) + "1", true},

	{"", false},
	{"   ", false},
	{"1.x.y", false},
	{"banana", false},
	{">>1", false},
	{"||", false},
	{"1 ||", false},
	{"v1.2.3", false},
	{"01.2.3", false},
	{"1.2.3.4", false},
	{"1.2.3-01", false},
	{"1.2.3-", false},
	{"1.x-beta", false},
	{"x.1", false},
	{"=>1.2", false},
	{"1|2", false},
	{"1 - 2 - 3", false},
	{"0 0 - 0", false},    // the parser reads a range after a space as the previous term's end
	{"~>0||0 - 0", false}, // and "0||0" as one version
	{"1.x||0 - 0", false},
	{"~>0 || 0 - 0", true},
	{"0 - 0||1", true},
	{">=1 - 2", false},
	{"99999999999999999999.0.0", false},
	{strings.Repeat("1||", 32) + "1", false},
	{strings.Repeat("1 ", 128) + "1", false}, // 257 characters
	{"1.2.3\n", true},
	{"1.2.3\x00", false},
	{"１.2.3", false},
}

// The pattern and Validate agree on a table of constraints, and every
// constraint the pattern takes, the parsers take too.
func TestConstraintPattern(t *testing.T) {
	for _, tt := range constraintTable {
		if got := patternAccepts(tt.c); got != tt.ok {
			t.Errorf("pattern on %q = %v, want %v", tt.c, got, tt.ok)
		}
		if got := Validate(tt.c) == nil; got != tt.ok {
			t.Errorf("Validate(%q) ok = %v, want %v", tt.c, got, tt.ok)
		}
		if tt.ok && !parserAccepts(tt.c) {
			t.Errorf("pattern takes %q but the parsers do not", tt.c)
		}
	}
}

// FuzzConstraintPattern checks on any input that the pattern (as the
// apiserver applies it) and Validate agree, and that the parsers take all the
// pattern takes, so that the pattern never lets through what the hub cannot
// resolve.
func FuzzConstraintPattern(f *testing.F) {
	for _, tt := range constraintTable {
		f.Add(tt.c)
	}
	f.Fuzz(func(t *testing.T, c string) {
		pat, valid := patternAccepts(c), Validate(c) == nil
		if pat != valid {
			t.Fatalf("%q: pattern %v, Validate %v", c, pat, valid)
		}
		if pat && !parserAccepts(c) {
			t.Fatalf("pattern takes %q but the parsers do not", c)
		}
	})
}

// constraintTokens are the pieces FuzzConstraintTokens builds constraints of:
// the grammar's own and near misses.
var constraintTokens = []string{
	"0", "1", "2", "10", "01", "99999999999999999999", ".", "x", "X", "*", "-", "+", "rc", "0a", "-0",
	" ", "  ", ",", ", ", "|", "||", " || ", " - ", "=", "!=", ">", ">=", "<", "<=", "~", "~>", "^", "=>", "v", "\t",
}

// FuzzConstraintTokens checks what FuzzConstraintPattern checks on strings
// made of the grammar's tokens, which reach far more of it than bytes do.
func FuzzConstraintTokens(f *testing.F) {
	f.Add([]byte{1, 6, 2, 6, 1})
	f.Add([]byte{28, 1, 16, 26, 2})
	f.Add([]byte{1, 6, 1, 6, 1, 12, 13, 6, 0, 22, 2})
	f.Fuzz(func(t *testing.T, picks []byte) {
		var b strings.Builder
		for _, p := range picks {
			b.WriteString(constraintTokens[int(p)%len(constraintTokens)])
		}
		c := b.String()
		pat, valid := patternAccepts(c), Validate(c) == nil
		if pat != valid {
			t.Fatalf("%q: pattern %v, Validate %v", c, pat, valid)
		}
		if pat && !parserAccepts(c) {
			t.Fatalf("pattern takes %q but the parsers do not", c)
		}
	})
}

// TestExactPattern: ParseExact, Parse and the pattern the apiserver
// applies agree on exact versions.
func TestExactPattern(t *testing.T) {
	re := regexp.MustCompile(ExactPattern)
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{"1.0.0", true}, {"0.0.0", true}, {"10.20.30", true}, {"1.3.0-rc.1", true}, {"1.3.0-rc.1+build.7", true},
		{"1.0.0-0.3.7", true}, {"1.0.0-x-y-z.--", true}, {"1.0.0+001", true},
		{"1.0", false}, {"v1.0.0", false}, {"01.0.0", false}, {"1.0.0-01", false}, {"^1.0", false}, {"1.x.0", false},
		{"=1.0.0", false}, {" 1.0.0", false}, {"1.0.0+", false}, {"1.0.0-", false}, {"12345678901234567.0.0", false},
	} {
		_, err := ParseExact(tc.s)
		if (err == nil) != tc.ok || re.MatchString(tc.s) != tc.ok {
			t.Errorf("%q: ParseExact err %v, pattern %v; want ok=%v", tc.s, err, re.MatchString(tc.s), tc.ok)
		}
		if _, perr := Parse(tc.s); tc.ok && perr != nil {
			t.Errorf("%q: the pattern takes it, Parse refuses: %v", tc.s, perr)
		}
	}
}

// FuzzExactPattern: whatever the pattern takes, Parse takes too.
func FuzzExactPattern(f *testing.F) {
	for _, s := range []string{"1.0.0", "1.3.0-rc.1+b.7", "01.0.0", "1.0.0-0a", "1.0.0+-"} {
		f.Add(s)
	}
	re := regexp.MustCompile(ExactPattern)
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := ParseExact(s); err == nil {
			if !re.MatchString(s) {
				t.Fatalf("%q: ParseExact takes it, the pattern does not", s)
			}
		} else if re.MatchString(s) {
			t.Fatalf("%q: the pattern takes it, ParseExact refuses: %v", s, err)
		}
	})
}
