// Package versions parses, orders and resolves the semantic versions of models.
//
// Model versions are strict semantic versions (MAJOR.MINOR.PATCH with an optional prerelease,
// no "v" prefix) because they are registry tags. A deployment names either an exact version or
// a constraint such as ">=1.2 <2", "^1.2", "~1.2.3" or "1.x"; Resolve picks the highest available
// version that satisfies it. Prerelease versions match only when the constraint names a prerelease.
//
// The package is pure: no I/O, no clocks.
package versions

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/Masterminds/semver/v3"
)

// ErrNoMatch is returned by Resolve when no available version satisfies the constraint.
var ErrNoMatch = errors.New("no matching version")

// MaxConstraintLen bounds constraint strings taken from outside input.
const MaxConstraintLen = 256

// The parts of ConstraintPattern.
const (
	// patNum is a version number without leading zeros, at most 16 digits so
	// that it fits in 64 bits.
	patNum = `(?:0|[1-9][0-9]{0,15})`
	// patAny is a wildcard: any number here and after.
	patAny = `[xX*]`
	// patPre is a prerelease identifier: a number without leading zeros or
	// alphanumerics with at least one letter or hyphen.
	patPre = `(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)`
	// patBuild is a build metadata identifier.
	patBuild = `[0-9A-Za-z-]+`
	// patVersion is a version of one to three numbers, the last of them
	// possibly a wildcard; only a full MAJOR.MINOR.PATCH takes a prerelease
	// and build metadata.
	patVersion = `(?:` + patAny + `|` + patNum + `(?:\.(?:` + patAny + `|` + patNum + `(?:\.(?:` + patAny + `|` + patNum +
		`(?:-` + patPre + `(?:\.` + patPre + `)*)?(?:\+` + patBuild + `(?:\.` + patBuild + `)*)?))?))?)`
	// patOp is a comparison: <, <=, >, >=, =, !=, ~ (same minor), ~> (the
	// same) or ^ (same major).
	patOp = `(?:[<>]=?|!?=|~>?|\^)`
	// patTerm is a version with an optional comparison.
	patTerm = patOp + `?\s*` + patVersion
	// patAll is terms that all must hold, apart by spaces or commas.
	patAll = patTerm + `(?:(?:\s*,\s*|\s+)` + patTerm + `)*`
	// patRange is a hyphen range, "1.2 - 1.4": a group of its own.
	patRange = patVersion + `\s+-\s+` + patVersion
)

// ConstraintPattern is the syntax of a version constraint, as a regular
// expression (RE2, which the Kubernetes apiserver also evaluates): an exact
// version ("1.2.3", "=1.2.3") or a range (">=1.2 <2", "^1.2", "~1.2.3",
// "1.x", "1.2 - 1.4", ">=1 || ^3"), up to 32 groups apart by "||" (a space
// after it when a hyphen range follows). Validate accepts exactly the
// constraints of at most MaxConstraintLen characters that it matches; the
// CRD of ModelDeployment carries it, so the apiserver refuses what Validate
// refuses.
const ConstraintPattern = `^\s*(?:` + patRange + `|` + patAll + `)(?:\s*\|\|(?:\s+` + patRange + `|\s*` + patAll + `)){0,31}\s*$`

// ExactPattern is the syntax of an exact version, MAJOR.MINOR.PATCH with
// an optional prerelease and build metadata, as a regular expression (RE2):
// the CRDs carry it where a field names one version, and ParseExact
// accepts exactly the versions it matches.
const ExactPattern = `^` + patNum + `\.` + patNum + `\.` + patNum + `(?:-` + patPre + `(?:\.` + patPre + `)*)?(?:\+` + patBuild + `(?:\.` + patBuild + `)*)?$`

// exactSyntax is ExactPattern compiled, when first used: compiling it and
// ConstraintPattern at start took every outpost command 14 ms.
var exactSyntax = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(ExactPattern) })

// ParseExact parses an exact version written as ExactPattern says: Parse,
// and numbers of at most 16 digits, as the apiserver checks them.
func ParseExact(s string) (*Version, error) {
	if !exactSyntax().MatchString(s) {
		return nil, fmt.Errorf("%q is not a semantic version (MAJOR.MINOR.PATCH, no leading zeros, numbers of at most 16 digits)", s)
	}
	return Parse(s)
}

// constraintSyntax is ConstraintPattern compiled, when first used.
var constraintSyntax = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(ConstraintPattern) })

// Version is a parsed strict semantic version.
type Version = semver.Version

// Parse parses a strict semantic version such as "1.2.3" or "1.3.0-rc.1".
func Parse(s string) (*Version, error) {
	v, err := semver.StrictNewVersion(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a semantic version (MAJOR.MINOR.PATCH): %w", s, err)
	}
	return v, nil
}

// Compare returns -1, 0 or +1 as version a is lower than, equal to or higher than b, in
// semantic version precedence. Both must be valid versions.
func Compare(a, b string) (int, error) {
	va, err := Parse(a)
	if err != nil {
		return 0, err
	}
	vb, err := Parse(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

// Sort sorts the valid semantic versions in vs from lowest to highest and returns them;
// strings that are not strict semantic versions (such as "latest") are dropped.
func Sort(vs []string) []string {
	parsed := parseAll(vs)
	out := make([]string, len(parsed))
	for i, p := range parsed {
		out[i] = p.Original()
	}
	return out
}

func parseAll(vs []string) []*Version {
	parsed := make([]*Version, 0, len(vs))
	for _, s := range vs {
		if v, err := semver.StrictNewVersion(s); err == nil {
			parsed = append(parsed, v)
		}
	}
	slices.SortStableFunc(parsed, func(a, b *Version) int { return a.Compare(b) })
	return parsed
}

// IsExact reports whether constraint pins one version ("1.2.3" or "=1.2.3").
func IsExact(constraint string) bool {
	_, ok := exact(constraint)
	return ok
}

func exact(constraint string) (*Version, bool) {
	s := strings.TrimSpace(constraint)
	s = strings.TrimSpace(strings.TrimPrefix(s, "="))
	v, err := semver.StrictNewVersion(s)
	if err != nil {
		return nil, false
	}
	return v, true
}

// Validate reports whether constraint is an exact version or a valid range:
// at most MaxConstraintLen characters that match ConstraintPattern.
func Validate(constraint string) error {
	_, _, err := parseConstraint(constraint)
	return err
}

func parseConstraint(constraint string) (*Version, *semver.Constraints, error) {
	if strings.TrimSpace(constraint) == "" {
		return nil, nil, errors.New("empty version constraint")
	}
	if len(constraint) > MaxConstraintLen {
		return nil, nil, fmt.Errorf("version constraint longer than %d characters", MaxConstraintLen)
	}
	if !constraintSyntax().MatchString(constraint) {
		return nil, nil, errors.New("not a semver version or range")
	}
	if v, ok := exact(constraint); ok {
		return v, nil, nil
	}
	c, err := semver.NewConstraint(constraint)
	if err != nil {
		return nil, nil, errors.New("not a semver version or range")
	}
	return nil, c, nil
}

// Resolve returns the highest version in available that satisfies constraint. An exact
// constraint matches only that version (a prerelease included); a range matches prereleases
// only when it names one. Entries of available that are not strict semantic versions are
// ignored. It returns an error wrapping ErrNoMatch when nothing matches.
func Resolve(constraint string, available []string) (string, error) {
	want, c, err := parseConstraint(constraint)
	if err != nil {
		return "", fmt.Errorf("version constraint %q: %w", constraint, err)
	}
	parsed := parseAll(available)
	for i := len(parsed) - 1; i >= 0; i-- {
		v := parsed[i]
		if want != nil {
			if v.Equal(want) {
				return v.Original(), nil
			}
			continue
		}
		if c.Check(v) {
			return v.Original(), nil
		}
	}
	return "", fmt.Errorf("%w for %q among %d versions", ErrNoMatch, constraint, len(parsed))
}

// Match reports whether version satisfies constraint, with the rules of Resolve.
func Match(constraint, version string) (bool, error) {
	if _, err := Parse(version); err != nil {
		return false, err
	}
	_, err := Resolve(constraint, []string{version})
	if errors.Is(err, ErrNoMatch) {
		return false, nil
	}
	return err == nil, err
}
