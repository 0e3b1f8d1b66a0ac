package transfer

import (
	"maps"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParseState(t *testing.T) {
	d := digest.FromString("x")
	head := string(stateHeader(d, 1000))
	tests := []struct {
		name        string
		in          string
		wantDone    []int
		wantPartial map[int]int64
		wantErr     string
	}{
		{"header only", head, nil, map[int]int64{}, ""},
		{"records", head + "c 0\nc 3\np 1 17\n", []int{0, 3}, map[int]int64{1: 17}, ""},
		{"done replaces partial", head + "p 2 5\nc 2\np 2 9\n", []int{2}, map[int]int64{}, ""},
		{"last partial wins", head + "p 2 5\np 2 9\n", nil, map[int]int64{2: 9}, ""},
		{"torn last line ignored", head + "c 1\nc 2", []int{1}, map[int]int64{}, ""},
		{"torn header", head[:10], nil, nil, "no complete header"},
		{"empty", "", nil, nil, "no complete header"},
		{"other magic", "something else\n", nil, nil, "not recognised"},
		{"bad digest", "outpost-transfer-state v1 sha256:zz 10\n", nil, nil, "header"},
		{"negative size", "outpost-transfer-state v1 " + d.String() + " -1\n", nil, nil, "bad size"},
		{"bad record", head + "x 1\n", nil, nil, "line 2"},
		{"negative index", head + "c -1\n", nil, nil, "line 2"},
		{"padded index", head + "c 01\n", nil, nil, "line 2"},
		{"partial too long", head + "p 1 1001\n", nil, nil, "line 2"},
		{"partial zero", head + "p 1 0\n", nil, nil, "line 2"},
		{"extra field", head + "c 1 2\n", nil, nil, "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseState([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Digest != d || st.Size != 1000 {
				t.Errorf("header = %s %d", st.Digest, st.Size)
			}
			want := map[int]bool{}
			for _, i := range tt.wantDone {
				want[i] = true
			}
			if !maps.Equal(st.Done, want) || !maps.Equal(st.Partial, tt.wantPartial) {
				t.Errorf("done %v partial %v, want %v %v", st.Done, st.Partial, want, tt.wantPartial)
			}
		})
	}
}

func FuzzParseState(f *testing.F) {
	d := digest.FromString("x")
	head := string(stateHeader(d, 1<<20))
	f.Add([]byte(head + "c 0\nc 3\np 1 17\n"))
	f.Add([]byte(head + "p 2 5\nc 2\nc 9"))
	f.Add([]byte("outpost-transfer-state v1 sha256:zz 10\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseState(b)
		if err != nil {
			return
		}
		// What parses re-encodes to something that parses the same.
		again, err := parseState(st.encode())
		if err != nil {
			t.Fatalf("re-encoded state does not parse: %v", err)
		}
		if again.Digest != st.Digest || again.Size != st.Size || !maps.Equal(again.Done, st.Done) || !maps.Equal(again.Partial, st.Partial) {
			t.Fatalf("round trip changed the state: %+v -> %+v", st, again)
		}
		for i, k := range st.Partial {
			if i < 0 || k <= 0 || k > st.Size || st.Done[i] {
				t.Fatalf("bad partial record %d %d kept", i, k)
			}
		}
	})
}
