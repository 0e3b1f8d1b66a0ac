package artifact

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// ValidatePath reports whether p is a safe relative file path inside a model:
// slash-separated, clean, relative, without "..", backslashes, drive letters,
// control characters or invalid UTF-8. Pull, Push and ParseChunkIndex apply it
// to every file path.
func ValidatePath(p string) error {
	bad := func(why string) error { return fmt.Errorf("unsafe file path %q: %s", p, why) }
	switch {
	case p == "" || p == ".":
		return bad("empty")
	case len(p) > MaxPathLen:
		return bad("too long")
	case !utf8.ValidString(p):
		return bad("invalid UTF-8")
	case strings.HasPrefix(p, "/"):
		return bad("absolute")
	case strings.Contains(p, `\`):
		return bad("contains a backslash")
	case len(p) >= 2 && p[1] == ':' && isASCIILetter(p[0]):
		return bad("starts with a drive letter")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return bad("contains a control character")
		}
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." {
			return bad(`contains ".."`)
		}
	}
	if path.Clean(p) != p {
		return bad("not clean")
	}
	return nil
}

func isASCIILetter(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') }

// checkPathSet rejects duplicate paths and paths that are both a file and a
// directory ("a" and "a/b").
func checkPathSet(paths []string) error {
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		if seen[p] {
			return fmt.Errorf("duplicate file path %q", p)
		}
		seen[p] = true
	}
	for _, p := range paths {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				return fmt.Errorf("file path %q is also a directory of %q", dir, p)
			}
		}
	}
	return nil
}
