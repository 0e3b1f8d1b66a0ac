// Command sync measures updating a model from v1 to v2 over a throttled
// link, with four clients in the same run, each behind its own simulated
// link (internal/linksim) with the same bandwidth cap:
//
//   - outpost: a real hub process and a real agent process that holds v1;
//     the deployment moves to v2 and the agent fetches what it lacks.
//   - rsync: Debian's rsync client, holding v1 at the destination, against
//     an rsync daemon serving v2 (its delta-transfer algorithm).
//   - oras: oras pull of v2 (everything).
//   - curl: one GET of v2's weights blob (the floor of a full download).
//
// Bytes are what crossed each link, both directions, from the link's own
// counters. It prints bytes, seconds, the time an ideal link would need for
// those bytes, and ratios against rsync.
//
//	go run ./bench/sync -size 64MiB -bandwidth 4MiB
//
// It needs ./bin/outpost (make build), .tools/bin/oras (scripts/tools.sh),
// and rsync and curl on the PATH (scripts/bench-deps.sh installs them all).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"outpost.dev/outpost/bench/benchhub"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/linksim"
)

func main() {
	var (
		size      = flag.String("size", "64MiB", "size of the weights file: a number with KiB, MiB or GiB")
		bandwidth = flag.String("bandwidth", "4MiB", "link bandwidth per second, each direction, the same for every client")
		latency   = flag.Duration("latency", 0, "one-way latency added by each link")
		change    = flag.Int("change", 10, "percent of the weights v2 changes (a contiguous tail, as fine-tuning the last layers does)")
		outpost   = flag.String("outpost", "bin/outpost", "outpost binary")
		oras      = flag.String("oras", ".tools/bin/oras", "oras binary")
		clients   = flag.String("clients", "outpost,rsync,oras,curl", "clients to run, in this order (ratios need rsync)")
	)
	flag.Parse()
	// Ctrl-C cancels ctx, which stops the hub and the other child processes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := benchhub.ParseSize(*size)
	if err != nil {
		fail(err)
	}
	bw, err := benchhub.ParseSize(*bandwidth)
	if err != nil {
		fail(err)
	}
	if *change < 1 || *change > 100 {
		fail(fmt.Errorf("-change %d: want 1 to 100", *change))
	}
	b := &bench{clients: strings.Split(*clients, ","), size: n, bw: bw, latency: *latency, change: *change, outpost: benchhub.AbsPath(*outpost), oras: benchhub.AbsPath(*oras)}
	if err := b.run(ctx); err != nil {
		fail(err)
	}
}

type bench struct {
	clients       []string
	size, bw      int64
	latency       time.Duration
	change        int
	outpost, oras string
	curl, rsync   string

	dir      string
	hub      *benchhub.Hub
	v1, v2   string // model directories
	v2Digest string // of v2's weights.bin
	api      *hubclient.Client
}

// result is one client's measurement.
type result struct {
	client   string
	up, down int64
	d        time.Duration
	note     string
}

func (r result) bytes() int64 { return r.up + r.down }

func (b *bench) run(ctx context.Context) error {
	for _, bin := range []string{b.outpost, b.oras} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (run make build and scripts/bench-deps.sh)", bin, err)
		}
	}
	var err error
	if b.curl, err = exec.LookPath("curl"); err != nil {
		return fmt.Errorf("curl: %w (run scripts/bench-deps.sh)", err)
	}
	if b.rsync, err = exec.LookPath("rsync"); err != nil {
		return fmt.Errorf("rsync: %w (run scripts/bench-deps.sh)", err)
	}
	if b.dir, err = os.MkdirTemp("", "outpost-bench-sync-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	if b.hub, err = benchhub.Start(ctx, b.outpost, b.dir); err != nil {
		return err
	}
	defer b.hub.Stop()
	if b.api, err = b.hub.Client(); err != nil {
		return err
	}

	b.v1, b.v2 = filepath.Join(b.dir, "v1"), filepath.Join(b.dir, "v2")
	fmt.Printf("writing v1 and v2: %s of float32 weights, v2 changes the last %d%%\n", benchhub.FormatSize(b.size), b.change)
	if err := benchhub.WriteModel(b.v1, b.v2, b.size, b.change, 1); err != nil {
		return err
	}
	if b.v2Digest, err = fileDigest(filepath.Join(b.v2, "weights.bin")); err != nil {
		return err
	}
	fmt.Println("pushing v1 (1.0.0) and v2 (1.1.0) to the hub")
	if _, err := b.hub.Run(ctx, "model", "push", b.v1, "--name", "bench", "--version", "1.0.0"); err != nil {
		return err
	}
	if _, err := b.hub.Run(ctx, "model", "push", b.v2, "--name", "bench", "--version", "1.1.0", "--parent", "bench@1.0.0"); err != nil {
		return err
	}
	out, err := b.hub.Run(ctx, "model", "diff", "bench@1.0.0", "bench@1.1.0")
	if err != nil {
		return err
	}
	diff := strings.TrimSpace(out)

	fmt.Printf("link: %s/s each direction, %s one-way latency\n\n", benchhub.FormatSize(b.bw), b.latency)
	fns := map[string]func(context.Context) (result, error){
		"outpost": b.outpostSync, "rsync": b.rsyncSync, "oras": b.orasPull, "curl": b.curlGet,
	}
	var results []result
	for _, c := range b.clients {
		fn, ok := fns[c]
		if !ok {
			return fmt.Errorf("-clients: unknown client %q (want outpost, rsync, oras, curl)", c)
		}
		fmt.Printf("%s ...\n", c)
		r, err := fn(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		r.client = c
		results = append(results, r)
	}
	b.print(results, diff)
	return nil
}

// v2Size is the total size of v2's files (config.json and weights.bin).
func (b *bench) v2Size() int64 {
	var total int64
	for _, f := range []string{"config.json", "weights.bin"} {
		if st, err := os.Stat(filepath.Join(b.v2, f)); err == nil {
			total += st.Size()
		}
	}
	return total
}

func (b *bench) print(rs []result, diff string) {
	v2 := b.v2Size()
	rsync, curl := result{up: 1, d: 1}, result{}
	for _, r := range rs {
		switch r.client {
		case "rsync":
			rsync = r
		case "curl":
			curl = r
		}
	}
	fmt.Printf("\nv1 -> v2 of a %s model (%d%% of the weights changed) over a %s/s link", benchhub.FormatSize(v2), b.change, benchhub.FormatSize(b.bw))
	if b.latency > 0 {
		fmt.Printf(", %s one-way latency", b.latency)
	}
	fmt.Println()
	fmt.Printf("%-8s %11s %10s %9s %8s %8s %8s %8s %8s  %s\n",
		"client", "bytes", "up", "% of v2", "seconds", "ideal s", "s/ideal", "bytes/", "time/", "")
	fmt.Printf("%-8s %11s %10s %9s %8s %8s %8s %8s %8s\n", "", "down+up", "", "", "", "", "", "rsync", "rsync")
	for _, r := range rs {
		ideal := float64(r.bytes()) / float64(b.bw)
		fmt.Printf("%-8s %11d %10d %8.1f%% %8.2f %8.2f %7.2fx %7.3fx %7.2fx  %s\n",
			r.client, r.bytes(), r.up, 100*float64(r.bytes())/float64(v2), r.d.Seconds(), ideal,
			r.d.Seconds()/ideal, float64(r.bytes())/float64(rsync.bytes()), r.d.Seconds()/rsync.d.Seconds(), r.note)
	}
	if curl.d > 0 {
		rate := float64(curl.bytes()) / curl.d.Seconds()
		fmt.Printf("\nThe link carried curl's single stream at %s/s, %.0f%% of its nominal rate; against that rate:\n",
			benchhub.FormatSize(int64(rate)), 100*rate/float64(b.bw))
		for _, r := range rs {
			fmt.Printf("  %-8s s/ideal %.2fx\n", r.client, r.d.Seconds()/(float64(r.bytes())/rate))
		}
	}
	fmt.Println("\nbytes: both directions of the client's link (linksim counters), TLS and HTTP or rsync protocol included.")
	fmt.Println("ideal s: bytes / bandwidth; s/ideal 1.00x is a link kept full from first byte to last.")
	fmt.Println("outpost's time runs from the deployment update on the hub until the agent's local state shows v2 active")
	fmt.Println("(long-poll wake-up, manifest, chunk index, missing chunks, verification, fsync and activation included).")
	fmt.Printf("hub's own estimate (outpost model diff): %s\n", diff)
}

// deploy applies the bench deployment at version, over the resource API
// directly (no CLI process start inside a measurement).
func (b *bench) deploy(ctx context.Context, version string) error {
	return benchhub.Deploy(ctx, b.api, "bench", "bench", version, map[string]string{"bench": "sync"})
}

func (b *bench) newLink() (*linksim.Link, error) {
	return linksim.Listen(b.hub.Addr, linksim.Options{Bandwidth: b.bw, Latency: b.latency})
}

// outpostSync runs an agent holding v1 and measures its update to v2.
func (b *bench) outpostSync(ctx context.Context) (result, error) {
	link, err := b.newLink()
	if err != nil {
		return result{}, err
	}
	defer link.Close()
	join, err := b.hub.Run(ctx, "cluster", "token", "create", "--ttl", "1h")
	if err != nil {
		return result{}, err
	}
	if err := b.deploy(ctx, "1.0.0"); err != nil {
		return result{}, err
	}
	data := filepath.Join(b.dir, "agent")
	ready := filepath.Join(b.dir, "agent.ready")
	cmd := exec.CommandContext(ctx, b.outpost, "agent", "--hub", "https://"+link.Addr(), "--ca-file", b.hub.CAFile,
		"--join-token", strings.TrimSpace(join), "--data", data, "--name", "edge-1", "--labels", "bench=sync",
		"--ready-file", ready)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := waitFile(ready, 60*time.Second); err != nil {
		return result{}, fmt.Errorf("agent did not start: %w\n%s", err, log.String())
	}
	// v1 first, over the same link, not measured.
	if _, err := waitActive(ctx, data, "1.0.0", 10*time.Minute); err != nil {
		return result{}, fmt.Errorf("%w\n%s", err, tail(log.String(), 3000))
	}
	time.Sleep(500 * time.Millisecond) // let the report of v1 go out before counting
	link.ResetStats()
	start := time.Now()
	phases := watchLink(link, start)
	if err := b.deploy(ctx, "1.1.0"); err != nil {
		return result{}, err
	}
	st, err := waitActive(ctx, data, "1.1.0", 10*time.Minute)
	d := time.Since(start)
	first, last := phases()
	if err != nil {
		return result{}, fmt.Errorf("%w\n%s", err, tail(log.String(), 3000))
	}
	s := link.Stats()
	var fetched int64
	for _, m := range st.Models {
		fetched += m.BytesFetched
	}
	return result{up: s.Up, down: s.Down, d: d, note: fmt.Sprintf("%d bytes of missing chunks before block sums; bulk began at %.2fs, last byte at %.2fs",
		fetched, first.Seconds(), last.Seconds())}, nil
}

// watchLink samples the link's down counter every 2ms from start. The
// function it returns stops sampling and says when the bulk of the
// transfer began (the first sample past 64 KiB) and when the last byte
// went down, both since start.
func watchLink(link *linksim.Link, start time.Time) func() (first, last time.Duration) {
	stop, done := make(chan struct{}), make(chan struct{})
	var first, last time.Duration
	go func() {
		defer close(done)
		var prev int64
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				down := link.Stats().Down
				if down > 64<<10 && first == 0 {
					first = now.Sub(start)
				}
				if down != prev {
					last, prev = now.Sub(start), down
				}
			}
		}
	}()
	return func() (time.Duration, time.Duration) {
		close(stop)
		<-done
		return first, last
	}
}

// waitActive polls the agent's local state every 50ms (what 'outpost agent
// status -o json' reads, without a process start per poll) until version is
// active.
func waitActive(ctx context.Context, data, version string, timeout time.Duration) (*agent.Status, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		st, err := agent.ReadStatus(ctx, data)
		if err == nil {
			for _, m := range st.Models {
				if m.ActiveVersion == version {
					return st, nil
				}
				last = fmt.Sprintf("active %q desired %q phase %s fetched %d/%d error %q", m.ActiveVersion, m.DesiredVersion, m.Phase, m.BytesFetched, m.BytesTotal, m.Error)
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("agent did not activate %s within %s: %s", version, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rsyncSync runs an rsync daemon serving v2 behind a link and an rsync
// client that holds v1.
func (b *bench) rsyncSync(ctx context.Context) (result, error) {
	port, err := benchhub.FreeAddr()
	if err != nil {
		return result{}, err
	}
	conf := filepath.Join(b.dir, "rsyncd.conf")
	// uid/gid: as root the daemon would switch to nobody, who cannot read the scratch directory.
	err = os.WriteFile(conf, []byte(fmt.Sprintf("use chroot = no\nuid = %d\ngid = %d\nlog file = %s\n[mod]\npath = %s\nread only = yes\n",
		os.Getuid(), os.Getgid(), filepath.Join(b.dir, "rsyncd.log"), b.v2)), 0o644)
	if err != nil {
		return result{}, err
	}
	_, p, _ := net.SplitHostPort(port)
	daemon := exec.CommandContext(ctx, b.rsync, "--daemon", "--no-detach", "--address", "127.0.0.1", "--port", p, "--config", conf)
	log := &syncBuffer{}
	daemon.Stdout, daemon.Stderr = log, log
	if err := daemon.Start(); err != nil {
		return result{}, err
	}
	defer func() { daemon.Process.Kill(); daemon.Wait() }()
	if err := waitListen(port, 10*time.Second); err != nil {
		return result{}, fmt.Errorf("rsync daemon: %w\n%s", err, log.String())
	}
	link, err := linksim.Listen(port, linksim.Options{Bandwidth: b.bw, Latency: b.latency})
	if err != nil {
		return result{}, err
	}
	defer link.Close()
	dest := filepath.Join(b.dir, "rsync-dest")
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return result{}, err
	}
	target := filepath.Join(dest, "weights.bin")
	if err := copyFile(filepath.Join(b.v1, "weights.bin"), target); err != nil {
		return result{}, err
	}
	// An older mtime than v2's, so rsync's quick check (same size) does not skip the file.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(target, old, old)
	link.ResetStats()
	start := time.Now()
	cmd := exec.CommandContext(ctx, b.rsync, "--stats", "rsync://"+link.Addr()+"/mod/weights.bin", target)
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return result{}, fmt.Errorf("rsync: %w\n%s", err, out)
	}
	if err := sameDigest(target, b.v2Digest); err != nil {
		return result{}, err
	}
	s := link.Stats()
	return result{up: s.Up, down: s.Down, d: d, note: rsyncNote(string(out))}, nil
}

// rsyncNote picks rsync's own counts out of its --stats output.
func rsyncNote(out string) string {
	get := func(label string) string {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(label) + `: ([0-9,]+)`).FindStringSubmatch(out)
		if m == nil {
			return "?"
		}
		return strings.ReplaceAll(m[1], ",", "")
	}
	return fmt.Sprintf("rsync --stats: literal %s, matched %s, sent %s, received %s",
		get("Literal data"), get("Matched data"), get("Total bytes sent"), get("Total bytes received"))
}

// orasPull pulls v2 whole with the oras CLI through a link.
func (b *bench) orasPull(ctx context.Context) (result, error) {
	link, err := b.newLink()
	if err != nil {
		return result{}, err
	}
	defer link.Close()
	out := filepath.Join(b.dir, "oras-out")
	start := time.Now()
	cmd := exec.CommandContext(ctx, b.oras, "pull", link.Addr()+"/models/bench:1.1.0", "-o", out,
		"--ca-file", b.hub.CAFile, "-u", "outpost", "-p", b.hub.Token)
	if o, err := cmd.CombinedOutput(); err != nil {
		return result{}, fmt.Errorf("%w\n%s", err, o)
	}
	d := time.Since(start)
	if err := sameDigest(filepath.Join(out, "weights.bin"), b.v2Digest); err != nil {
		return result{}, err
	}
	s := link.Stats()
	return result{up: s.Up, down: s.Down, d: d}, nil
}

// curlGet downloads v2's weights blob with one GET through a link.
func (b *bench) curlGet(ctx context.Context) (result, error) {
	link, err := b.newLink()
	if err != nil {
		return result{}, err
	}
	defer link.Close()
	out := filepath.Join(b.dir, "curl.out")
	start := time.Now()
	cmd := exec.CommandContext(ctx, b.curl, "-sS", "--fail", "--cacert", b.hub.CAFile, "-H", "Authorization: Bearer "+b.hub.Token,
		"-o", out, fmt.Sprintf("https://%s/v2/models/bench/blobs/%s", link.Addr(), b.v2Digest))
	if o, err := cmd.CombinedOutput(); err != nil {
		return result{}, fmt.Errorf("%w\n%s", err, o)
	}
	d := time.Since(start)
	if err := sameDigest(out, b.v2Digest); err != nil {
		return result{}, err
	}
	s := link.Stats()
	return result{up: s.Up, down: s.Down, d: d, note: "weights.bin only"}, nil
}

// writeModel writes two versions of a synthetic model of about size bytes
// of float32 weights: v2 changes the last change% of them, in one
// contiguous run, as fine-tuning the last layers would (like the demo's
// model, larger).
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d, err := digest.FromReader(f)
	return d.String(), err
}

func sameDigest(path, want string) error {
	got, err := fileDigest(path)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s has digest %s, want v2's %s", path, got, want)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func waitFile(path string, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not written within %s", path, timeout)
		}
	}
}

func waitListen(addr string, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %w", addr, timeout, err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sync:", err)
	os.Exit(1)
}

// syncBuffer is a bytes.Buffer safe for a child's stdout and stderr at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
