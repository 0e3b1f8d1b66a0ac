package cli

import "outpost.dev/outpost/internal/versions"

// sortVersions sorts semver tags lowest first in place, dropping tags that are not semver.
func sortVersions(vs []string) []string {
	sorted := versions.Sort(vs)
	n := copy(vs, sorted)
	return vs[:n]
}
