package agent

import (
	"net/http"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/internal/outbox"
	"outpost.dev/outpost/internal/testenv"
)

func TestReachability(t *testing.T) {
	r := newReachability()
	back := r.wait()
	if r.answered() {
		t.Fatal("an answer woke the loops with the hub never unreachable")
	}
	r.failed()
	if !r.answered() {
		t.Fatal("the first answer after a failure did not wake the loops")
	}
	select {
	case <-back:
	default:
		t.Fatal("the channel taken before the failure is still open")
	}
	next := r.wait()
	if r.answered() {
		t.Error("a second answer woke the loops again")
	}
	select {
	case <-next:
		t.Error("the next channel is closed with the hub reachable throughout")
	default:
	}
}

// slowRetries is an agent configuration whose backoff after one failure
// (5 to 10 minutes) is far longer than the tests below wait.
func slowRetries(cfg Config) Config {
	cfg.RetryBase, cfg.RetryMax = 10*time.Minute, time.Hour
	return cfg
}

// TestAgentRetriesWhenTheHubAnswersAgain: after the hub was cut off long
// enough for the poll and the outbox to back off for minutes, the agent
// polls, syncs and sends as soon as the hub answers again (its reports go
// out on their own interval), not when the backoff ends.
func TestAgentRetriesWhenTheHubAnswersAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
		writeModel(t, v1, v2)
		h.push(v1, "demo", "1.0.0")
		h.deploy("fashion", "demo", ">=1.0.0", false)
		dir := filepath.Join(t.TempDir(), "agent")
		a, stop, _ := startAgent(t, slowRetries(agentConfig(h, dir, h.joinToken())))
		defer stop()
		testenv.WaitFor(t, 30*time.Second, "v1 active", func() bool { return activeVersion(a, "fashion") == "1.0.0" })

		h.partition(true)
		if _, err := a.Outbox().Put(t.Context(), outbox.Record{Key: "k1", Kind: "note", Payload: []byte(`{"text":"cut off"}`)}); err != nil {
			t.Fatal(err)
		}
		// Long enough for the long poll and the outbox to fail and back off.
		time.Sleep(10 * time.Second)
		synctest.Wait()

		h.partition(false)
		h.push(v2, "demo", "1.1.0")
		testenv.WaitFor(t, 30*time.Second, "v2 active after the hub answered again", func() bool { return activeVersion(a, "fashion") == "1.1.0" })
		testenv.WaitFor(t, 30*time.Second, "the outbox sent", func() bool {
			st, err := a.Outbox().Stats(t.Context())
			return err == nil && st.Records == 0
		})
	})
}

// TestAgentPollsAtOnceAfterJoiningAgain: when the hub no longer knows the
// agent's credential (its cluster was deleted), the agent joins again and
// polls with the new credential at once, instead of after a backoff.
func TestAgentPollsAtOnceAfterJoiningAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
		writeModel(t, v1, v2)
		h.push(v1, "demo", "1.0.0")
		h.deploy("fashion", "demo", ">=1.0.0", false)
		dir := filepath.Join(t.TempDir(), "agent")
		a, stop, _ := startAgent(t, slowRetries(agentConfig(h, dir, h.joinToken())))
		defer stop()
		testenv.WaitFor(t, 30*time.Second, "v1 active", func() bool { return activeVersion(a, "fashion") == "1.0.0" })

		if code, b := h.api(http.MethodDelete, "/clusters/edge-1", "", nil); code >= 300 {
			t.Fatalf("delete cluster: %d %s", code, b)
		}
		h.push(v2, "demo", "1.1.0")
		testenv.WaitFor(t, 30*time.Second, "v2 active after joining again", func() bool { return activeVersion(a, "fashion") == "1.1.0" })
		testenv.WaitFor(t, 10*time.Second, "the cluster back at the hub", func() bool {
			code, _ := h.api(http.MethodGet, "/clusters/edge-1", "", nil)
			return code == http.StatusOK
		})
	})
}
