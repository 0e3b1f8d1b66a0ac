package cli

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/testenv"
)

// A note put with 'agent outbox put' while the agent runs reaches the hub
// once, and 'cluster notes' lists it.
func TestAgentOutboxPutAndClusterNotes(t *testing.T) {
	url, admin := testHub(t)
	h, err := hubclient.New(url, hubclient.Options{Token: admin})
	if err != nil {
		t.Fatal(err)
	}
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "edge-1"}}
	v1alpha1.SetTypeMeta(c)
	if err := h.Apply(t.Context(), c, nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "agent")
	if _, errOut, code := runCLI(t, "agent", "outbox", "put", "--data", dir, "--key", "k0", "--text", "x"); code == 0 || !strings.Contains(errOut, "not an agent data directory") {
		t.Errorf("put into no agent: %d %q", code, errOut)
	}
	a, err := agent.New(t.Context(), agent.Config{Dir: dir, Name: "edge-1", Hub: url, Credential: admin,
		ReportInterval: 50 * time.Millisecond, PollTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; a.Close() })

	out, errOut, code := runCLI(t, "agent", "outbox", "put", "--data", dir, "--key", "k1", "--text", "fan replaced\nat 9am")
	if code != 0 || !strings.Contains(out, `put note "k1"`) {
		t.Fatalf("put = %d %q %q", code, out, errOut)
	}
	testenv.WaitFor(t, 30*time.Second, "the note to reach the hub", func() bool {
		l, err := h.Notes(t.Context(), "edge-1")
		return err == nil && len(l.Items) == 1
	})
	// The same key again: sent again, a duplicate at the hub, not a second note.
	if _, errOut, code := runCLI(t, "agent", "outbox", "put", "--data", dir, "--key", "k1", "--text", "fan replaced\nat 9am", "--priority", "control"); code != 0 {
		t.Fatalf("put again = %d %q", code, errOut)
	}
	testenv.WaitFor(t, 30*time.Second, "the outbox to empty", func() bool {
		st, err := agent.ReadStatus(t.Context(), dir)
		return err == nil && st.Outbox.Records == 0
	})
	out, errOut, code = runCLI(t, "--hub", url, "--token", admin, "cluster", "notes", "edge-1")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "k1") || !strings.Contains(out, "fan replaced at 9am") {
		t.Errorf("cluster notes = %d %q %q", code, out, errOut)
	}
	out, _, code = runCLI(t, "--hub", url, "--token", admin, "cluster", "notes", "edge-1", "-o", "json")
	if code != 0 || !strings.Contains(out, `"text": "fan replaced\nat 9am"`) {
		t.Errorf("cluster notes -o json = %d %q", code, out)
	}
	if _, errOut, code := runCLI(t, "--hub", url, "--token", admin, "cluster", "notes", "edge-2"); code != 0 || !strings.Contains(errOut, "no notes") {
		t.Errorf("notes of a cluster that sent none = %d %q", code, errOut)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--key", "k2"}, "--text"},
		{[]string{"--text", "x"}, "--key is required"},
		{[]string{"--key", "k2", "--text", "x", "--payload", "{}"}, "not both"},
		{[]string{"--key", "k2", "--text", " "}, "some text"},
		{[]string{"--key", "k2", "--kind", "note", "--payload", `{"txt": "x"}`}, "some text"},
		{[]string{"--key", "k2", "--kind", "drift.window", "--payload", `{`}, "not JSON"},
		{[]string{"--key", "k2", "--kind", "drift.window", "--text", "x"}, "wants --payload"},
		{[]string{"--key", "k2", "--text", "x", "--priority", "urgent"}, "--priority"},
	} {
		args := append([]string{"agent", "outbox", "put", "--data", dir}, tt.args...)
		if _, errOut, code := runCLI(t, args...); code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v = %d %q, want an error with %q", tt.args, code, errOut, tt.want)
		}
	}
}
