package agent

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/internal/testenv"
)

// importWatchHours is the import watch's interval in the tests whose fake clock runs for hours:
// no bundle is imported there, and its default of seconds would cost a look at the state
// database tens of thousands of times.
const importWatchHours = 10 * time.Minute

// TestTransferWindows runs an agent against a hub on a synctest bubble's clock, with a
// transfer window from 02:00 to 03:00 UTC and no transfer outside it: no blob byte crosses
// before the window opens (the agent says what waits and when the window opens), the version
// arrives inside it, a later version waits through hours of closed window, and the same version marked
// urgent crosses at once.
func TestTransferWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
		writeModel(t, v1, v2)
		h.push(v1, "demo", "1.0.0")
		h.push(v2, "demo", "1.1.0")
		h.Apply("clusters", "edge-1", `apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata: {name: edge-1, labels: {region: eu}}
spec:
  transfer:
    timeZone: UTC
    windows: [{start: "02:00", end: "03:00"}]
    insideBandwidth: 64MiB
`)
		deploy := func(version string, urgent bool) {
			t.Helper()
			h.Apply("modeldeployments", "fashion", fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: fashion}
spec:
  model: {name: demo, version: %q}
  clusterSelectors: [{matchLabels: {region: eu}}]
  urgent: %v
`, version, urgent))
		}
		deploy("1.0.0", false)
		day := time.Now().UTC().Truncate(24 * time.Hour)
		if time.Now().UTC().Sub(day) > time.Hour {
			day = day.Add(24 * time.Hour) // start before the window of the day
		}
		time.Sleep(time.Until(day.Add(time.Minute)))

		cfg := agentConfig(h, filepath.Join(t.TempDir(), "agent"), h.joinToken())
		cfg.PollTimeout, cfg.ReportInterval = 5*time.Minute, time.Minute // hours pass in this test
		cfg.ImportWatchInterval = importWatchHours
		a, stop, _ := startAgent(t, cfg)
		defer stop()
		h.Served.Store(0)
		testenv.WaitFor(t, time.Minute, "desired state applied", func() bool { return modelStatus(t, a.cfg.Dir, "fashion").DesiredVersion == "1.0.0" })
		time.Sleep(time.Until(day.Add(2*time.Hour - time.Minute)))
		st, err := a.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n := h.Served.Load(); n != 0 || activeVersion(a, "fashion") != "" {
			t.Fatalf("before the window: %d blob bytes crossed, active %q", n, activeVersion(a, "fashion"))
		}
		ts := st.Transfer
		if ts == nil || ts.Open || ts.NextChange == nil || !ts.NextChange.Time.Equal(day.Add(2*time.Hour)) ||
			!slices.Equal(ts.Waiting, []string{"fashion"}) || ts.WaitingBytes <= 0 {
			t.Fatalf("transfer status before the window: %+v", ts)
		}

		testenv.WaitFor(t, 10*time.Minute, "1.0.0 active in the window", func() bool { return activeVersion(a, "fashion") == "1.0.0" })
		if now := time.Now().UTC(); now.Before(day.Add(2*time.Hour)) || !now.Before(day.Add(3*time.Hour)) {
			t.Fatalf("1.0.0 arrived at %v, outside the window", now)
		}
		// The hub hears where the window stands.
		testenv.WaitFor(t, 2*time.Minute, "the hub sees the window open", func() bool {
			code, b := h.api(http.MethodGet, "/clusters/edge-1", "", nil)
			return code == http.StatusOK && strings.Contains(string(b), `"transfer":{"open":true`)
		})

		// After the window: a new version waits while it is closed.
		time.Sleep(time.Until(day.Add(3*time.Hour + time.Minute)))
		h.Served.Store(0)
		deploy("1.1.0", false)
		testenv.WaitFor(t, time.Minute, "1.1.0 desired", func() bool { return modelStatus(t, a.cfg.Dir, "fashion").DesiredVersion == "1.1.0" })
		time.Sleep(4 * time.Hour)
		if n := h.Served.Load(); n != 0 || activeVersion(a, "fashion") != "1.0.0" {
			t.Fatalf("outside the window: %d blob bytes crossed, active %q", n, activeVersion(a, "fashion"))
		}
		// Marked urgent, it crosses at once.
		deploy("1.1.0", true)
		start := time.Now()
		testenv.WaitFor(t, time.Minute, "urgent 1.1.0 active", func() bool { return activeVersion(a, "fashion") == "1.1.0" })
		if h.Served.Load() == 0 {
			t.Fatal("urgent version active with no byte crossing")
		}
		t.Logf("the urgent version crossed in %v, %d bytes, outside the window", time.Since(start), h.Served.Load())
	})
}

// TestTransferWindowCloses checks that a fetch the window cannot hold stops when it closes,
// moves no byte until it opens again, and then resumes where it stopped.
func TestTransferWindowCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
		writeModel(t, v1, v2)
		h.push(v1, "demo", "1.0.0")
		// A minute a day at 100 KiB/s carries 6 MB: the 8 MiB model takes two windows.
		h.Apply("clusters", "edge-1", `apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata: {name: edge-1, labels: {region: eu}}
spec:
  transfer:
    windows: [{start: "02:00", end: "02:01"}]
    insideBandwidth: 100KiB
`)
		h.deploy("fashion", "demo", "1.0.0", false)
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(day.Add(time.Hour)))
		cfg := agentConfig(h, filepath.Join(t.TempDir(), "agent"), h.joinToken())
		// A day passes: reports every 10 minutes (nothing here reads them) and no faster
		// look for an imported bundle keep the agent's and the hub's databases from
		// thousands of needless writes.
		cfg.PollTimeout, cfg.ReportInterval = 5*time.Minute, 10*time.Minute
		cfg.ImportWatchInterval = importWatchHours
		a, stop, _ := startAgent(t, cfg)
		defer stop()
		h.Served.Store(0)

		time.Sleep(time.Until(day.Add(2*time.Hour + 2*time.Minute)))
		first := h.Served.Load()
		if first == 0 || activeVersion(a, "fashion") != "" {
			t.Fatalf("after the first window: %d bytes, active %q", first, activeVersion(a, "fashion"))
		}
		if limit := int64(100<<10) * 61; first > limit+256<<10 {
			t.Errorf("%d bytes in a minute's window at 100 KiB/s", first)
		}
		time.Sleep(12 * time.Hour)
		if n := h.Served.Load(); n != first {
			t.Fatalf("%d bytes crossed while the window was closed", n-first)
		}
		testenv.WaitFor(t, 26*time.Hour, "1.0.0 active after the next window", func() bool { return activeVersion(a, "fashion") == "1.0.0" })
		if now := time.Now().UTC(); now.Before(day.Add(26 * time.Hour)) {
			t.Fatalf("active at %v, before the second window", now)
		}
		total := h.Served.Load()
		t.Logf("%d bytes in the first window, %d in all", first, total)
		if size := int64(8 << 20); total > size+size/5 {
			t.Errorf("%d bytes for an 8 MiB model: the second window did not resume the first's fetch", total)
		}
	})
}
