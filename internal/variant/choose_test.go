package variant

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

func acc(v float64) *float64 { return &v }

// The fleet's usual candidates: the original and three variants.
var (
	original = Candidate{Name: Original, SizeBytes: 400 * mib, PeakMemoryBytes: 410 * mib, Accuracy: acc(0.91)}
	fp16     = Candidate{Name: "fp16", SizeBytes: 200 * mib, PeakMemoryBytes: 210 * mib, Accuracy: acc(0.909)}
	int8     = Candidate{Name: "int8", SizeBytes: 100 * mib, PeakMemoryBytes: 110 * mib, Accuracy: acc(0.88)}
	pruned   = Candidate{Name: "pruned", SizeBytes: 60 * mib} // nothing measured
	all      = []Candidate{original, fp16, int8, pruned}
)

func TestChoose(t *testing.T) {
	gib := int64(1 << 30)
	for _, tt := range []struct {
		name   string
		facts  Facts
		cands  []Candidate
		lim    Limits
		want   string
		fits   bool
		reason []string // parts of the reason, in order
	}{
		{"no limits: the original", Facts{}, all, Limits{}, Original, true,
			[]string{"original: the most accurate that fits (accuracy 0.91)"}},
		{"memory excludes the original", Facts{MemoryBytes: gib}, all, Limits{MaxMemoryPercent: 25}, "fp16", true,
			[]string{"fp16: the most accurate that fits (accuracy 0.909)", "original needs 410.0 MiB memory, limit 256.0 MiB (25% of 1.0 GiB)"}},
		{"memory excludes all but pruned (its size stands in)", Facts{MemoryBytes: gib / 2}, all, Limits{MaxMemoryPercent: 20}, "pruned", true,
			[]string{"pruned: the most accurate that fits (accuracy not measured)", "int8 needs 110.0 MiB memory, limit 102.4 MiB"}},
		{"unknown memory never excludes", Facts{}, all, Limits{MaxMemoryPercent: 1}, Original, true,
			[]string{"original: the most accurate", "memory limit not applied: the cluster reports no memory"}},
		{"fetch time at the link rate", Facts{LinkBps: mib}, all, Limits{MaxFetchTime: 2 * time.Minute}, "int8", true,
			[]string{"int8: the most accurate that fits (accuracy 0.88)", "original takes 6m40s to fetch at 1.0 MiB/s, limit 2m0s", "fp16 takes 3m20s to fetch"}},
		{"unknown link never excludes", Facts{}, all, Limits{MaxFetchTime: time.Second}, Original, true,
			[]string{"fetch time limit not applied: the cluster's link rate is unknown"}},
		{"both limits", Facts{MemoryBytes: gib, LinkBps: 2 * mib}, all, Limits{MaxMemoryPercent: 25, MaxFetchTime: time.Minute}, "int8", true,
			[]string{"int8: the most accurate", "original needs 410.0 MiB memory, limit 256.0 MiB (25% of 1.0 GiB), takes 3m20s to fetch at 2.0 MiB/s, limit 1m0s", "fp16 takes 1m40s"}},
		{"prefer smallest", Facts{}, all, Limits{Prefer: PreferSmallest}, "pruned", true,
			[]string{"pruned: the smallest that fits (60.0 MiB)"}},
		{"allowed", Facts{}, all, Limits{Allowed: []string{"int8", "fp16"}}, "fp16", true,
			[]string{"fp16: the most accurate", "original not allowed", "pruned not allowed"}},
		{"none fits: the smallest allowed, saying why", Facts{MemoryBytes: 100 * mib}, all, Limits{MaxMemoryPercent: 10, Allowed: []string{Original, "int8"}}, "int8", false,
			[]string{"int8: no allowed candidate fits the limits; the smallest is sent", "it needs 110.0 MiB memory, limit 10.0 MiB (10% of 100.0 MiB)", "original needs 410.0 MiB"}},
		{"none allowed: the smallest of all", Facts{}, []Candidate{original, int8}, Limits{Allowed: []string{"fp16"}}, "int8", false,
			[]string{"int8: no candidate is allowed (allowed: fp16); the smallest is sent"}},
		{"an unmeasured original beats measured variants", Facts{}, []Candidate{{Name: Original, SizeBytes: 10}, int8}, Limits{}, Original, true,
			[]string{"original: the most accurate that fits (accuracy not measured)"}},
		{"an unmeasured variant ranks last", Facts{}, []Candidate{pruned, int8}, Limits{}, "int8", true, nil},
		{"equal accuracy: the smaller", Facts{}, []Candidate{{Name: "a", SizeBytes: 9, Accuracy: acc(0.5)}, {Name: "b", SizeBytes: 3, Accuracy: acc(0.5)}}, Limits{}, "b", true, nil},
		{"original alone", Facts{MemoryBytes: 1}, []Candidate{original}, Limits{MaxMemoryPercent: 50}, Original, false,
			[]string{"original: no allowed candidate fits", "it needs 410.0 MiB memory"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Choose(tt.facts, tt.cands, tt.lim)
			if !ok || got.Candidate.Name != tt.want || got.Fits != tt.fits {
				t.Fatalf("chose %s (fits %v), want %s (fits %v): %s", got.Candidate.Name, got.Fits, tt.want, tt.fits, got.Reason)
			}
			rest := got.Reason
			for _, p := range tt.reason {
				i := strings.Index(rest, p)
				if i < 0 {
					t.Fatalf("reason %q lacks %q (in order)", got.Reason, p)
				}
				rest = rest[i+len(p):]
			}
		})
	}
	if _, ok := Choose(Facts{}, nil, Limits{}); ok {
		t.Error("chose among no candidates")
	}
}

// FuzzChoose: Choose never panics; it always picks one of the candidates;
// when some allowed candidate satisfies the limits it picks one that does,
// the best by the preference; otherwise the smallest allowed (or of all).
func FuzzChoose(f *testing.F) {
	f.Add(int64(1<<30), int64(1<<20), int32(25), int64(600), "int8,original", false, []byte{10, 20, 30, 40, 50, 60})
	f.Add(int64(0), int64(0), int32(0), int64(0), "", true, []byte{})
	f.Fuzz(func(t *testing.T, mem, link int64, pct int32, fetchSecs int64, allowed string, smallest bool, raw []byte) {
		names := []string{Original, "int8", "fp16", "pruned"}
		var cands []Candidate
		for i := 0; i+3 <= len(raw) && len(cands) < 8; i += 3 {
			c := Candidate{Name: names[int(raw[i])%len(names)], SizeBytes: int64(raw[i+1]) * mib, PeakMemoryBytes: int64(raw[i+2]) * mib / 2}
			if raw[i]&0x80 != 0 {
				c.Accuracy = acc(float64(raw[i+2]) / 255)
			}
			if raw[i]&0x40 != 0 {
				c.Accuracy = acc(math.NaN())
			}
			cands = append(cands, c)
		}
		lim := Limits{MaxMemoryPercent: pct, MaxFetchTime: time.Duration(fetchSecs) * time.Second}
		if allowed != "" {
			lim.Allowed = strings.Split(allowed, ",")
		}
		if smallest {
			lim.Prefer = PreferSmallest
		}
		facts := Facts{MemoryBytes: mem, LinkBps: link}
		got, ok := Choose(facts, cands, lim)
		if !ok {
			if len(cands) > 0 {
				t.Fatal("no choice among candidates")
			}
			return
		}
		if !slices.Contains(cands, got.Candidate) && !slices.ContainsFunc(cands, func(c Candidate) bool { return sameCandidate(c, got.Candidate) }) {
			t.Fatalf("chose %+v, not a candidate", got.Candidate)
		}
		if got.Reason == "" {
			t.Fatal("no reason")
		}
		allowedC := func(c Candidate) bool { return len(lim.Allowed) == 0 || slices.Contains(lim.Allowed, c.Name) }
		fitsC := func(c Candidate) bool {
			if pct > 0 && mem > 0 {
				need := c.PeakMemoryBytes
				if need <= 0 {
					need = c.SizeBytes
				}
				if float64(need) > float64(mem)*float64(pct)/100 {
					return false
				}
			}
			if lim.MaxFetchTime > 0 && link > 0 && float64(c.SizeBytes)/float64(link) > lim.MaxFetchTime.Seconds() {
				return false
			}
			return true
		}
		anyFits, anyAllowed := false, false
		for _, c := range cands {
			anyAllowed = anyAllowed || allowedC(c)
			anyFits = anyFits || allowedC(c) && fitsC(c)
		}
		if got.Fits != anyFits {
			t.Fatalf("Fits %v, but a fitting allowed candidate exists: %v (%s)", got.Fits, anyFits, got.Reason)
		}
		if anyFits {
			if !allowedC(got.Candidate) || !fitsC(got.Candidate) {
				t.Fatalf("chose %+v, which breaks the limits, though one fits: %s", got.Candidate, got.Reason)
			}
			for _, c := range cands {
				if !allowedC(c) || !fitsC(c) {
					continue
				}
				if smallest && c.SizeBytes < got.Candidate.SizeBytes {
					t.Fatalf("prefer smallest chose %d bytes over %d", got.Candidate.SizeBytes, c.SizeBytes)
				}
				if !smallest && accuracyRank(c) > accuracyRank(got.Candidate) {
					t.Fatalf("prefer accurate chose %v over %v", accuracyRank(got.Candidate), accuracyRank(c))
				}
			}
			return
		}
		for _, c := range cands {
			if (allowedC(c) || !anyAllowed) && c.SizeBytes < got.Candidate.SizeBytes {
				t.Fatalf("none fits, yet %d bytes were chosen over %d", got.Candidate.SizeBytes, c.SizeBytes)
			}
		}
		if anyAllowed && !allowedC(got.Candidate) {
			t.Fatalf("chose %s, not allowed", got.Candidate.Name)
		}
	})
}

// sameCandidate compares candidates whose accuracy may be NaN.
func sameCandidate(a, b Candidate) bool {
	if a.Name != b.Name || a.SizeBytes != b.SizeBytes || a.PeakMemoryBytes != b.PeakMemoryBytes || (a.Accuracy == nil) != (b.Accuracy == nil) {
		return false
	}
	return a.Accuracy == nil || a.Accuracy == b.Accuracy
}
