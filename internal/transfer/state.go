package transfer

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The state file records what a transfer has verified, so that a restarted
// process does not fetch it again. It is text, one record a line:
//
//	outpost-transfer-state v1 <file digest> <file size>
//	c <chunk index>               the chunk is in the part file and verified
//	p <chunk index> <bytes>       the chunk's first bytes are in the part file
//
// Records are only appended. A reader ignores a last line without its
// newline (a write cut by a crash) and re-verifies every chunk it keeps,
// so the file is a hint, never trusted for content.
const stateMagic = "outpost-transfer-state v1"

// maxStateChunk bounds chunk indexes in a state file.
const maxStateChunk = 1 << 30

// transferState is what a state file says.
type transferState struct {
	Digest  digest.Digest
	Size    int64
	Done    map[int]bool
	Partial map[int]int64
}

// stateHeader returns the first line of a state file.
func stateHeader(d digest.Digest, size int64) []byte {
	return fmt.Appendf(nil, "%s %s %d\n", stateMagic, d, size)
}

// appendDone appends the record of a verified chunk.
func appendDone(b []byte, i int) []byte { return fmt.Appendf(b, "c %d\n", i) }

// appendPartial appends the record of a chunk's first n bytes.
func appendPartial(b []byte, i int, n int64) []byte { return fmt.Appendf(b, "p %d %d\n", i, n) }

// parseState decodes a state file. A last line without a newline is
// ignored; any other malformed line is an error.
func parseState(b []byte) (transferState, error) {
	st := transferState{Done: map[int]bool{}, Partial: map[int]int64{}}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		return st, fmt.Errorf("state file has no complete header")
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	head := strings.Fields(lines[0])
	if len(head) != 4 || head[0]+" "+head[1] != stateMagic {
		return st, fmt.Errorf("state file header %q not recognised", truncate(lines[0]))
	}
	d, err := digest.Parse(head[2])
	if err != nil {
		return st, fmt.Errorf("state file header: %w", err)
	}
	size, err := strconv.ParseInt(head[3], 10, 64)
	if err != nil || size < 0 {
		return st, fmt.Errorf("state file header: bad size %q", truncate(head[3]))
	}
	st.Digest, st.Size = d, size
	for n, line := range lines[1:] {
		f := strings.Fields(line)
		bad := func() error { return fmt.Errorf("state file line %d: %q not recognised", n+2, truncate(line)) }
		if len(f) < 2 {
			return st, bad()
		}
		i, err := strconv.Atoi(f[1])
		if err != nil || i < 0 || i >= maxStateChunk || strconv.Itoa(i) != f[1] {
			return st, bad()
		}
		switch {
		case f[0] == "c" && len(f) == 2:
			st.Done[i] = true
			delete(st.Partial, i)
		case f[0] == "p" && len(f) == 3:
			k, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil || k <= 0 || k > size || strconv.FormatInt(k, 10) != f[2] {
				return st, bad()
			}
			if !st.Done[i] {
				st.Partial[i] = k
			}
		default:
			return st, bad()
		}
	}
	return st, nil
}

// encode renders st as a state file.
func (st transferState) encode() []byte {
	b := stateHeader(st.Digest, st.Size)
	for i := range st.Done {
		b = appendDone(b, i)
	}
	for i, k := range st.Partial {
		if !st.Done[i] {
			b = appendPartial(b, i, k)
		}
	}
	return b
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
