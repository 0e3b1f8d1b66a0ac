// Command fleet measures one hub serving a large fleet: it starts a hub
// process and N simulated agents that speak the real agent protocol (join
// with a join token, long-poll the cluster's desired state, fetch the
// manifest and chunk index, report, and retry as the agent does, honouring
// the hub's Retry-After), then deploys a model to all of them and pushes a
// new version, then rolls a third out as a Canary in waves (-waves), and
// measures how long the fleet takes to converge, which
// errors the agents got, and what the hub spends on it: CPU seconds and
// resident memory (from /proc), in all and per cluster.
//
// The simulated agents do not fetch model files: bytes are not the point
// here (bench/sync measures them). Everything else a real agent sends the
// hub, they send: a report at start, on every change and every
// -report-interval, and a long-poll always open.
//
// The agents run in child processes (this program again, with -child), at
// most -agents-per-process in each, so that each process stays within its
// open-files limit: every agent holds a connection for its long-poll, and
// more while it reports and fetches. The hub sees the same either way: one
// HTTP/1.1 connection per request in flight.
//
//	go run ./bench/fleet -agents 1000
//
// It needs ./bin/outpost (make build). Linux only (/proc).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/bench/benchhub"
	"outpost.dev/outpost/internal/hubclient"
)

// idleConnsTotal is the idle connections all the simulated agents keep for
// reuse, split among the child processes.
const idleConnsTotal = 4096

// handshakesPerProcess is how many TLS handshakes the simulated agents of a
// process run at once (newClient).
const handshakesPerProcess = 16

func main() {
	var (
		agents         = flag.Int("agents", 1000, "simulated agents (clusters)")
		perProcess     = flag.Int("agents-per-process", 2500, "simulated agents in each child process")
		joinConc       = flag.Int("join-concurrency", 16, "joins in flight at once")
		pollTimeout    = flag.Duration("poll-timeout", 30*time.Second, "long-poll timeout (the agent's default)")
		reportInterval = flag.Duration("report-interval", 10*time.Second, "periodic report interval (the agent's default)")
		idle           = flag.Duration("idle", 10*time.Second, "how long to measure the hub with the fleet idle")
		timeout        = flag.Duration("timeout", 5*time.Minute, "limit for each phase")
		outpost        = flag.String("outpost", "bin/outpost", "outpost binary")
		hubLog         = flag.String("hub-log", "", "copy the hub's log to this file at the end")
		waves          = flag.Int("waves", 5, "waves of the Canary rollout phase (0 skips it)")
		bake           = flag.Duration("bake", 2*time.Second, "bake time of each wave of the rollout phase")

		child     = flag.Bool("child", false, "run as a child process (internal)")
		childHub  = flag.String("child-hub", "", "the hub's host:port (child)")
		childCA   = flag.String("child-ca", "", "the hub's CA file (child)")
		childList = flag.String("child-members", "", "file listing the child's agents (child)")
		childIdle = flag.Int("child-idle-conns", idleConnsTotal, "idle connections the child keeps (child)")
	)
	flag.Parse()
	// Ctrl-C cancels ctx, which stops the hub and the other child processes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *child {
		if _, err := raiseNoFile(); err != nil {
			fail(err)
		}
		if err := runChild(ctx, childConfig{hub: *childHub, caFile: *childCA, members: *childList, idleConns: *childIdle,
			pollTimeout: *pollTimeout, reportInterval: *reportInterval}); err != nil {
			fail(err)
		}
		return
	}
	if *agents < 1 || *perProcess < 1 {
		fail(errors.New("-agents and -agents-per-process must be at least 1"))
	}
	f := &fleet{n: *agents, perProcess: *perProcess, joinConc: max(*joinConc, 1), pollTimeout: *pollTimeout,
		reportInterval: *reportInterval, idle: *idle, timeout: *timeout, outpost: benchhub.AbsPath(*outpost), hubLog: *hubLog,
		waves: *waves, bake: *bake}
	if err := f.run(ctx); err != nil {
		fail(err)
	}
}

type fleet struct {
	n, perProcess, joinConc           int
	pollTimeout, reportInterval, idle time.Duration
	timeout                           time.Duration
	outpost, hubLog                   string
	waves                             int           // of the rollout phase
	bake                              time.Duration // of each wave
	dir                               string
	hub                               *benchhub.Hub
	admin                             *hubclient.Client
	members                           []member
	children                          []*childProc

	mu               sync.Mutex // guards what follows, which the children's events update
	ready            []bool
	nReady           int
	target           string          // the version the fleet converges to now
	recvAt, activeAt []time.Duration // per agent, since the rollout's start; 0 until then
	nRecv, nActive   int
	acks             chan struct{} // a child took the current rollout
}

// childProc is a child process running some of the simulated agents.
type childProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	st    stats // its last stats
	done  chan struct{}
}

func (f *fleet) run(ctx context.Context) error {
	nofile, err := raiseNoFile()
	if err != nil {
		return err
	}
	if need := uint64(3*min(f.n, f.perProcess) + 256); nofile < need {
		return fmt.Errorf("open files limit is %d; %d agents in a process need about %d (lower -agents-per-process)",
			nofile, min(f.n, f.perProcess), need)
	}
	if f.dir, err = os.MkdirTemp("", "outpost-bench-fleet-"); err != nil {
		return err
	}
	defer os.RemoveAll(f.dir)
	if f.hub, err = benchhub.Start(ctx, f.outpost, f.dir); err != nil {
		return err
	}
	defer f.hub.Stop()
	if f.hubLog != "" {
		defer func() {
			if b, err := os.ReadFile(filepath.Join(f.dir, "hub.log")); err == nil {
				_ = os.WriteFile(f.hubLog, b, 0o644)
			}
		}()
	}
	if f.admin, err = f.hub.Client(); err != nil {
		return err
	}
	// A small model: the simulated agents fetch its manifest and chunk index only.
	v1, v2 := filepath.Join(f.dir, "v1"), filepath.Join(f.dir, "v2")
	if err := writeModel(v1, 1); err != nil {
		return err
	}
	if err := writeModel(v2, 2); err != nil {
		return err
	}
	if _, err := f.hub.Run(ctx, "model", "push", v1, "--name", "fleet", "--version", "1.0.0"); err != nil {
		return err
	}
	join, err := f.hub.Run(ctx, "cluster", "token", "create", "--ttl", "2h", "--description", "bench/fleet")
	if err != nil {
		return err
	}
	joinToken := strings.TrimSpace(join)
	base := usage(f.hub.Pid)
	procs := (f.n + f.perProcess - 1) / f.perProcess
	fmt.Printf("hub pid %d, %.1f MiB resident before any cluster; %d simulated agents in %d processes; open files limit %d\n",
		f.hub.Pid, base.rssMiB(), f.n, procs, nofile)

	// 1. Join, from this process.
	fmt.Printf("joining %d clusters, %d at a time ...\n", f.n, f.joinConc)
	u0, t0 := usage(f.hub.Pid), time.Now()
	if err := f.join(ctx, joinToken); err != nil {
		return err
	}
	joinD, u1 := time.Since(t0), usage(f.hub.Pid)
	joinCPU := u1.cpu - u0.cpu
	// The agents start once all have joined, so that the join figures are the cost of
	// joining alone, not of joining while the fleet polls and reports.
	fmt.Printf("  joined in %.2fs; hub CPU %.2fs (%.2f ms per join), %.1f MiB resident\n",
		joinD.Seconds(), joinCPU, 1000*joinCPU/float64(f.n), u1.rssMiB())

	fmt.Println("starting every agent's long-poll and reports ...")
	if err := f.startChildren(ctx, procs); err != nil {
		return err
	}
	defer f.stopChildren()
	ts := time.Now()
	f.send(command{Op: "start"})
	// Wait until every agent has reported once and has a long-poll open, then let the
	// hub settle before measuring it idle.
	if err := f.waitFor(ctx, func() bool { return f.started() == f.n }, "every agent reported and polling", func() string {
		st := f.stats()
		return fmt.Sprintf("%d of %d agents reported and polling; errors: %s%s", f.started(), f.n, st.errorsSince(stats{}), st.lastErrors())
	}); err != nil {
		return fmt.Errorf("%w%s", err, f.stats().lastErrors())
	}
	us := usage(f.hub.Pid)
	fmt.Printf("  every agent reported and polling after %.2fs; hub CPU %.2fs, %.1f MiB resident; errors: %s\n",
		time.Since(ts).Seconds(), us.cpu-u1.cpu, us.rssMiB(), f.stats().errorsSince(stats{}))
	time.Sleep(2 * time.Second)
	ui0, ti0, s0 := usage(f.hub.Pid), time.Now(), f.stats()
	time.Sleep(f.idle)
	ui1, idleD, s1 := usage(f.hub.Pid), time.Since(ti0), f.stats()
	idleCPU, idleReports := ui1.cpu-ui0.cpu, s1.Reports-s0.Reports
	fmt.Printf("  idle %.0fs: hub CPU %.2fs (%.0f%% of one CPU), %d reports (%.1f/s, %.1f ms hub CPU each), %.1f MiB resident; errors: %s\n",
		idleD.Seconds(), idleCPU, 100*idleCPU/idleD.Seconds(), idleReports, float64(idleReports)/idleD.Seconds(),
		1000*idleCPU/max(float64(idleReports), 1), ui1.rssMiB(), s1.errorsSince(s0))

	// 2. Deploy v1 to every cluster.
	fmt.Println("deploying fleet ^1.0 (1.0.0) to every cluster ...")
	dep1, err := f.converge(ctx, "1.0.0", func() error { return f.deploy(ctx, "^1.0") })
	if err != nil {
		return err
	}
	// 3. Push v2: the deployment follows ^1.0 to it.
	fmt.Println("pushing 1.1.0 ...")
	var pushD time.Duration
	dep2, err := f.converge(ctx, "1.1.0", func() error {
		start := time.Now()
		_, err := f.hub.Run(ctx, "model", "push", v2, "--name", "fleet", "--version", "1.1.0", "--parent", "fleet@1.0.0")
		pushD = time.Since(start)
		return err
	})
	if err != nil {
		return err
	}
	// 4. A Canary rollout of 1.2.0 in waves, each gated on the previous one's reports.
	var roll convergence
	var rollWaves int32
	last := "1.1.0"
	if f.waves > 0 {
		fmt.Printf("rolling 1.2.0 out in %d waves (bake %s) ...\n", f.waves, f.bake)
		if err := f.canary(ctx); err != nil {
			return err
		}
		v3 := filepath.Join(f.dir, "v3")
		if err := writeModel(v3, 3); err != nil {
			return err
		}
		roll, err = f.converge(ctx, "1.2.0", func() error {
			_, err := f.hub.Run(ctx, "model", "push", v3, "--name", "fleet", "--version", "1.2.0", "--parent", "fleet@1.1.0")
			return err
		})
		if err != nil {
			return err
		}
		t := time.Now()
		if rollWaves, err = f.rolloutWaves(ctx); err != nil {
			return err
		}
		fmt.Printf("  rollout Succeeded after %d waves, %.2fs after the last Active report (its bake)\n", rollWaves, time.Since(t).Seconds())
		last = "1.2.0"
	}
	rows, err := f.activeRows(ctx, last)
	if err != nil {
		return err
	}
	end, st := usage(f.hub.Pid), f.stats()

	n := float64(f.n)
	fmt.Printf("\n%d simulated agents in %d processes against one hub process (%s, %d CPUs)\n", f.n, procs, runtimeDesc(), runtime.NumCPU())
	fmt.Printf("each agent: its own join and credential, a long-poll always open (timeout %s), a report at start,\n", f.pollTimeout)
	fmt.Printf("on every change and every %s; on a new desired state it fetches the manifest, config and chunk index\n", f.reportInterval)
	fmt.Printf("(not the model files) and reports Active; it retries as the agent does, honouring Retry-After.\n")
	fmt.Printf("HTTP/1.1, one connection per request in flight.\n\n")
	fmt.Printf("%-34s %10s %12s %14s   %s\n", "phase", "seconds", "hub CPU s", "CPU ms/cluster", "errors by status")
	fmt.Printf("%-34s %10.2f %12.2f %14.2f\n", fmt.Sprintf("join (%d at a time)", f.joinConc), joinD.Seconds(), joinCPU, 1000*joinCPU/n)
	fmt.Printf("%-34s %10.2f %12.2f %14.2f   %s; %.1f%% of one CPU; %d reports (%.0f/s)\n", "idle (long-polls, periodic reports)",
		idleD.Seconds(), idleCPU, 1000*idleCPU/n, s1.errorsSince(s0), 100*idleCPU/idleD.Seconds(), idleReports, float64(idleReports)/idleD.Seconds())
	for _, c := range []struct {
		name string
		r    convergence
	}{{"deploy 1.0.0 to all", dep1}, {"push 1.1.0, all follow ^1.0", dep2}} {
		fmt.Printf("%-34s %10.2f %12.2f %14.2f   %s\n", c.name, c.r.all.Seconds(), c.r.cpu, 1000*c.r.cpu/n, c.r.errors)
	}
	if f.waves > 0 {
		fmt.Printf("%-34s %10.2f %12.2f %14.2f   %s; %d waves, bake %s each\n", "push 1.2.0, Canary rollout", roll.all.Seconds(), roll.cpu,
			1000*roll.cpu/n, roll.errors, rollWaves, f.bake)
		fmt.Printf("  the last Active report less the bake times before it: %.2fs\n", roll.all.Seconds()-float64(rollWaves-1)*f.bake.Seconds())
	}
	fmt.Println("\nconvergence: from the apply (or the start of the push) until the hub acknowledged every agent's Active report")
	fmt.Printf("%-30s %10s %10s %10s %10s\n", "", "p50 s", "p90 s", "p99 s", "max s")
	for _, c := range []struct {
		name string
		d    []time.Duration
	}{{"1.0.0 received", dep1.recv}, {"1.0.0 reported Active", dep1.active}, {"1.1.0 received", dep2.recv}, {"1.1.0 reported Active", dep2.active},
		{"1.2.0 received (waves)", roll.recv}, {"1.2.0 reported Active (waves)", roll.active}} {
		if len(c.d) == 0 {
			continue
		}
		fmt.Printf("%-30s %10.2f %10.2f %10.2f %10.2f\n", c.name, pct(c.d, 50), pct(c.d, 90), pct(c.d, 99), pct(c.d, 100))
	}
	fmt.Printf("(the push of 1.1.0 itself, a CLI process, took %.2fs of its convergence time)\n", pushD.Seconds())
	fmt.Printf("\nhub memory: %.1f MiB resident before joins, %.1f MiB after (peak %.1f MiB): %.1f KiB per cluster (peak %.1f KiB)\n",
		base.rssMiB(), end.rssMiB(), end.hwmMiB(), (end.rss-base.rss)/1024/n, (end.hwm-base.rss)/1024/n)
	fmt.Printf("hub CPU over the whole run: %.2f s, %.2f ms per cluster\n", end.cpu-base.cpu, 1000*(end.cpu-base.cpu)/n)
	fmt.Printf("the hub's ModelDeployment shows %d of %d clusters Active on %s\n", rows, f.n, last)
	fmt.Printf("agent requests: %d reports, %d desired-state answers, %d manifest+index fetches; %d errors (%s)",
		st.Reports, st.Polls, st.Fetches, st.errors(), st.errorsSince(stats{}))
	fmt.Println(st.lastErrors())
	if rows != f.n {
		return fmt.Errorf("the hub shows %d of %d clusters Active on %s", rows, f.n, last)
	}
	return nil
}

// canary makes the fleet deployment a Canary rollout in f.waves waves: a canary wave and
// the rest, each a share of the fleet, with f.bake between them.
func (f *fleet) canary(ctx context.Context) error {
	var d v1alpha1.ModelDeployment
	if err := f.admin.Get(ctx, v1alpha1.PluralModelDeployments, "fleet", &d); err != nil {
		return err
	}
	pct := int32(max(1, (100+f.waves-1)/f.waves))
	d.Spec.Rollout = v1alpha1.Rollout{Strategy: v1alpha1.RolloutCanary, MaxUnavailablePercent: &pct,
		Canary:   &v1alpha1.Canary{Count: int32(max(1, f.n*int(pct)/100))},
		BakeTime: &metav1.Duration{Duration: f.bake}, SilentAfter: &metav1.Duration{Duration: 5 * time.Minute}}
	d.Status = v1alpha1.ModelDeploymentStatus{}
	return f.admin.Apply(ctx, &d, nil)
}

// rolloutWaves waits until the fleet deployment's rollout of 1.2.0 succeeded (after the
// last wave's bake) and returns how many waves it took.
func (f *fleet) rolloutWaves(ctx context.Context) (int32, error) {
	var st *v1alpha1.RolloutStatus
	err := f.waitFor(ctx, func() bool {
		var d v1alpha1.ModelDeployment
		if err := f.admin.Get(ctx, v1alpha1.PluralModelDeployments, "fleet", &d); err != nil {
			return false
		}
		st = d.Status.Rollout
		return st != nil && st.Target.Version == "1.2.0" && st.Phase != v1alpha1.RolloutProgressing
	}, "rollout of 1.2.0 done", func() string {
		if st == nil {
			return "no rollout yet"
		}
		return fmt.Sprintf("%s, wave %d: %s", st.Phase, st.Wave, st.Message)
	})
	if err != nil {
		return 0, err
	}
	if st.Phase != v1alpha1.RolloutSucceeded {
		return 0, fmt.Errorf("rollout of 1.2.0: %s: %s", st.Phase, st.Message)
	}
	return st.Wave, nil
}

// join joins every cluster, joinConc at a time, and keeps their credentials.
func (f *fleet) join(ctx context.Context, token string) error {
	client, err := newClient(f.hub.CAFile, f.joinConc, f.joinConc)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	h, err := hubclient.New("https://"+f.hub.Addr, hubclient.Options{HTTPClient: client, Attempts: 1})
	if err != nil {
		return err
	}
	f.members = make([]member, f.n)
	sem := make(chan struct{}, f.joinConc)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for i := range f.members {
		name := fmt.Sprintf("edge-%04d", i)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := h.Join(ctx, token, name, map[string]string{"bench": "fleet", "zone": fmt.Sprintf("z%d", i%10)})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = fmt.Errorf("join %s: %w", name, err)
				}
				return
			}
			f.members[i] = member{I: i, Name: name, Cred: resp.Credential}
		}()
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
	}
	wg.Wait()
	return first
}

// startChildren starts procs child processes, each with its share of the agents.
func (f *fleet) startChildren(ctx context.Context, procs int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	f.ready = make([]bool, f.n)
	f.recvAt, f.activeAt = make([]time.Duration, f.n), make([]time.Duration, f.n)
	f.acks = make(chan struct{}, procs)
	for k := range procs {
		lo, hi := k*f.n/procs, (k+1)*f.n/procs
		list := filepath.Join(f.dir, fmt.Sprintf("members-%d.json", k))
		b, err := json.Marshal(f.members[lo:hi])
		if err != nil {
			return err
		}
		if err := os.WriteFile(list, b, 0o600); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, self, "-child", "-child-hub", f.hub.Addr, "-child-ca", f.hub.CAFile, "-child-members", list,
			"-child-idle-conns", strconv.Itoa(max(1, idleConnsTotal/procs)),
			"-poll-timeout", f.pollTimeout.String(), "-report-interval", f.reportInterval.String())
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		c := &childProc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
		f.children = append(f.children, c)
		go func() {
			defer close(c.done)
			f.read(c, stdout)
		}()
	}
	return nil
}

// read takes a child's events until its stdout ends.
func (f *fleet) read(c *childProc, r io.Reader) {
	in := bufio.NewScanner(r)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	for in.Scan() {
		var ev event
		if err := json.Unmarshal(in.Bytes(), &ev); err != nil {
			fmt.Fprintf(os.Stderr, "fleet: child %d: %q: %v\n", c.cmd.Process.Pid, in.Text(), err)
			continue
		}
		f.mu.Lock()
		switch ev.Ev {
		case "ready":
			if !f.ready[ev.I] {
				f.ready[ev.I] = true
				f.nReady++
			}
		case "recv":
			if ev.Version == f.target && f.recvAt[ev.I] == 0 {
				f.recvAt[ev.I] = time.Duration(ev.D)
				f.nRecv++
			}
		case "active":
			if ev.Version == f.target && f.activeAt[ev.I] == 0 {
				f.activeAt[ev.I] = time.Duration(ev.D)
				f.nActive++
			}
		case "target":
			if ev.Version == f.target {
				f.acks <- struct{}{}
			}
		case "stats":
			c.mu.Lock()
			c.st = *ev.Stats
			c.mu.Unlock()
		}
		f.mu.Unlock()
	}
}

// send sends cmd to every child.
func (f *fleet) send(cmd command) {
	b, _ := json.Marshal(cmd)
	b = append(b, '\n')
	for _, c := range f.children {
		if _, err := c.stdin.Write(b); err != nil {
			fmt.Fprintf(os.Stderr, "fleet: child %d: %v\n", c.cmd.Process.Pid, err)
		}
	}
}

// stopChildren ends the children's input, which stops their agents, and waits for them.
func (f *fleet) stopChildren() {
	for _, c := range f.children {
		c.stdin.Close()
	}
	for _, c := range f.children {
		<-c.done
		_ = c.cmd.Wait()
	}
}

// stats sums the children's last stats.
func (f *fleet) stats() stats {
	var st stats
	for _, c := range f.children {
		c.mu.Lock()
		st.add(&c.st)
		c.mu.Unlock()
	}
	if st.Errors == nil {
		st.Errors, st.Last = map[string]int64{}, map[string]string{}
	}
	return st
}

func (f *fleet) started() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nReady
}

func (f *fleet) progress() (recv, active int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nRecv, f.nActive
}

// convergence is one rollout's measurement.
type convergence struct {
	recv, active []time.Duration // per agent, since the start
	all          time.Duration   // until the last Active report was acknowledged
	cpu          float64         // hub CPU seconds meanwhile
	errors       string          // the agents' errors meanwhile, by status code
}

// converge tells the children that version is the target, runs start, and
// waits until every agent has had its Active report for version acknowledged.
func (f *fleet) converge(ctx context.Context, version string, start func() error) (convergence, error) {
	f.mu.Lock()
	f.target = version
	clear(f.recvAt)
	clear(f.activeAt)
	f.nRecv, f.nActive = 0, 0
	f.mu.Unlock()
	s0 := f.stats()
	u0 := usage(f.hub.Pid)
	t0 := time.Now()
	f.send(command{Op: "target", Version: version, T0: t0.UnixNano()})
	for range f.children {
		<-f.acks
	}
	if err := start(); err != nil {
		return convergence{}, err
	}
	err := f.waitFor(ctx, func() bool { _, a := f.progress(); return a == f.n }, "every agent Active on "+version, func() string {
		u := usage(f.hub.Pid)
		r, a := f.progress()
		st := f.stats()
		return fmt.Sprintf("%s received by %d, Active on %d; hub CPU %.1fs since the start, %.1f MiB resident; errors: %s%s",
			version, r, a, u.cpu-u0.cpu, u.rssMiB(), st.errorsSince(s0), st.lastErrors())
	})
	all, u1, s1 := time.Since(t0), usage(f.hub.Pid), f.stats()
	if err != nil {
		r, a := f.progress()
		return convergence{}, fmt.Errorf("%w: %d received it, %d Active; hub CPU %.1fs meanwhile; errors: %s%s",
			err, r, a, u1.cpu-u0.cpu, s1.errorsSince(s0), s1.lastErrors())
	}
	c := convergence{all: all, cpu: u1.cpu - u0.cpu, errors: s1.errorsSince(s0)}
	fmt.Printf("  %s Active on all %d after %.2fs; hub CPU %.2fs (%.2f ms per cluster), %.1f MiB resident; errors: %s\n",
		version, f.n, all.Seconds(), c.cpu, 1000*c.cpu/float64(f.n), u1.rssMiB(), c.errors)
	f.mu.Lock()
	c.recv, c.active = slices.Clone(f.recvAt), slices.Clone(f.activeAt)
	f.mu.Unlock()
	return c, nil
}

// waitFor waits until cond holds, printing progress every 15 seconds.
func (f *fleet) waitFor(ctx context.Context, cond func() bool, what string, progress func() string) error {
	start := time.Now()
	deadline, next := start.Add(f.timeout), start.Add(15*time.Second)
	for !cond() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		now := time.Now()
		if now.After(deadline) {
			return fmt.Errorf("%s: not within %s", what, f.timeout)
		}
		if now.After(next) {
			fmt.Printf("  %3.0fs: %s\n", now.Sub(start).Seconds(), progress())
			next = next.Add(15 * time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// deploy applies the fleet deployment, selecting every cluster by label.
func (f *fleet) deploy(ctx context.Context, version string) error {
	return benchhub.Deploy(ctx, f.admin, "fleet", "fleet", version, map[string]string{"bench": "fleet"})
}

// activeRows counts the rows of the fleet deployment that show version Active.
func (f *fleet) activeRows(ctx context.Context, version string) (int, error) {
	var d v1alpha1.ModelDeployment
	if err := f.admin.Get(ctx, v1alpha1.PluralModelDeployments, "fleet", &d); err != nil {
		return 0, err
	}
	k := 0
	for _, r := range d.Status.Clusters {
		if r.Phase == v1alpha1.PhaseActive && r.ActiveVersion == version {
			k++
		}
	}
	return k, nil
}

// newClient is the HTTP client the simulated agents of one process share:
// HTTP/1.1 like the agent, no cap on connections (each open long-poll holds
// one), and an idle pool of idleConns so that reports reuse connections.
//
// At most handshakes TLS handshakes run at once in the process, each
// dialled only once it may run: a real agent handshakes on its own CPU, but
// thousands of simulated ones share a few, and started together each would
// take longer than the 10 s the agent's transport allows it, and fail for
// want of the bench's CPU, not the hub's. Each handshake still has those
// 10 s from its dial.
func newClient(caFile string, idleConns, handshakes int) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tlsConfig := &tls.Config{RootCAs: pool}
	tr.TLSClientConfig = tlsConfig
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 0, idleConns
	tr.ResponseHeaderTimeout = 5 * time.Minute
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second} // as http.DefaultTransport
	slots := make(chan struct{}, max(handshakes, 1))
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-slots }()
		raw, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := tlsConfig.Clone()
		if cfg.ServerName, _, err = net.SplitHostPort(addr); err != nil {
			raw.Close()
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, tr.TLSHandshakeTimeout)
		defer cancel()
		c := tls.Client(raw, cfg)
		if err := c.HandshakeContext(hctx); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
	return &http.Client{Transport: tr}, nil
}

// hubUsage is the hub process's CPU time and memory.
type hubUsage struct {
	cpu      float64 // user+system seconds
	rss, hwm float64 // bytes
}

func (u hubUsage) rssMiB() float64 { return u.rss / (1 << 20) }
func (u hubUsage) hwmMiB() float64 { return u.hwm / (1 << 20) }

// usage reads /proc/pid/stat (utime, stime) and /proc/pid/status (VmRSS, VmHWM).
func usage(pid int) hubUsage {
	var u hubUsage
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name, which is in parentheses and may hold spaces.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			fs := strings.Fields(s[i+1:])
			// fs[0] is field 3 (state); utime and stime are fields 14 and 15.
			if len(fs) > 12 {
				ut, _ := strconv.ParseFloat(fs[11], 64)
				st, _ := strconv.ParseFloat(fs[12], 64)
				u.cpu = (ut + st) / clockTicks
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			for key, dst := range map[string]*float64{"VmRSS:": &u.rss, "VmHWM:": &u.hwm} {
				if v, ok := strings.CutPrefix(l, key); ok {
					kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
					*dst = kb * 1024
				}
			}
		}
	}
	return u
}

// clockTicks is USER_HZ, 100 on Linux on every architecture Go supports.
const clockTicks = 100

// raiseNoFile raises the soft open-files limit to the hard limit (the hub,
// started afterwards, inherits it) and returns it.
func raiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return l.Cur, nil
}

// writeModel writes a small model: 1 MiB of random weights and a config.
func writeModel(dir string, seed byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	w := make([]byte, 1<<20)
	rand.Read(w)
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), w, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), []byte(fmt.Sprintf(`{"seed": %d}`+"\n", seed)), 0o644)
}

func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))].Seconds()
}

func runtimeDesc() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			}
		}
	}
	return "unknown CPU"
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fleet:", err)
	os.Exit(1)
}
