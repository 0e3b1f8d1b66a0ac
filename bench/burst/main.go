// Command burst measures the memory of an inference server under bursts of
// large requests: it serves the zoo's MLP with a serving.Server in a child
// process, sends -clients concurrent requests of about -size bytes each
// (Open Inference Protocol v2 JSON, binary tensor data, or gRPC), -rounds
// times, and prints the child's peak resident set during each burst and
// its resident set once the burst is over. Requests refused for want of
// room (429 or RESOURCE_EXHAUSTED) are sent again after their Retry-After,
// so every round completes the same work.
//
//	go run ./bench/burst [-size 60MB] [-clients 16] [-rounds 3] [-body json|binary|grpc] [-settle 5s]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/bytesize"
)

func main() {
	var (
		size      = flag.String("size", "60MB", "approximate size of each request")
		clients   = flag.Int("clients", 16, "requests sent at once in each burst")
		rounds    = flag.Int("rounds", 3, "bursts")
		body      = flag.String("body", "json", "request kind: json (JSON tensor data), binary (binary tensor data extension) or grpc (raw_input_contents)")
		settle    = flag.Duration("settle", 5*time.Second, "quiet time after each burst before its resident set is read")
		maxReq    = flag.String("max-request-bytes", "64MiB", "the server's largest request")
		maxFlight = flag.String("max-inflight-bytes", "", "the server's budget of request bytes in flight (default: the server's)")
		child     = flag.Bool("child", false, "serve (internal: the measured process)")
	)
	flag.Parse()
	maxReqN, err := agent.ParseBandwidth(*maxReq)
	if err != nil {
		fail(err)
	}
	var maxFlightN int64
	if *maxFlight != "" {
		if maxFlightN, err = agent.ParseBandwidth(*maxFlight); err != nil {
			fail(err)
		}
	}
	if *child {
		if err := serveChild(maxReqN, maxFlightN); err != nil {
			fail(err)
		}
		return
	}
	sizeN, err := agent.ParseBandwidth(*size)
	if err != nil {
		fail(err)
	}
	cfg := config{size: sizeN, clients: *clients, rounds: *rounds, kind: *body, settle: *settle,
		childArgs: []string{"-child", "-max-request-bytes", *maxReq}}
	if *maxFlight != "" {
		cfg.childArgs = append(cfg.childArgs, "-max-inflight-bytes", *maxFlight)
	}
	if err := run(context.Background(), cfg); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/burst:", err)
	os.Exit(1)
}

type config struct {
	size            int64
	clients, rounds int
	kind            string
	settle          time.Duration
	childArgs       []string
}

// roundResult is what one burst did and cost.
type roundResult struct {
	ok, refused       int64
	elapsed           time.Duration
	peak, end, settle int64 // child's RSS: highest during the burst, at its end, after the settle time
}

func run(ctx context.Context, cfg config) error {
	req, err := newRequest(cfg.kind, cfg.size)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, exe, cfg.childArgs...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // the child stops when it closes
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
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("child: %w", err)
	}
	var restAddr, grpcAddr string
	if _, err := fmt.Sscanf(line, "ready %s %s", &restAddr, &grpcAddr); err != nil {
		return fmt.Errorf("child said %q", line)
	}
	send, closeClient, err := req.client(restAddr, grpcAddr)
	if err != nil {
		return err
	}
	defer closeClient()
	pid := cmd.Process.Pid
	base, err := rss(pid)
	if err != nil {
		return err
	}
	fmt.Printf("%d concurrent %s requests of %s, %d rounds; serving process RSS before: %s\n\n",
		cfg.clients, cfg.kind, bytesize.Format(int64(len(req.body))), cfg.rounds, bytesize.Format(base))

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "round\tok\trefused\tseconds\tpeak RSS\tRSS at end\tRSS after %v\t\n", cfg.settle)
	for r := range cfg.rounds {
		res, err := burst(ctx, pid, send, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t\n", r+1, res.ok, res.refused, res.elapsed.Seconds(),
			bytesize.Format(res.peak), bytesize.Format(res.end), bytesize.Format(res.settle))
	}
	tw.Flush()
	hwm, err := procStatus(pid, "VmHWM")
	if err != nil {
		return err
	}
	fmt.Printf("\npeak RSS of the serving process over the run (VmHWM): %s\n", bytesize.Format(hwm))
	return nil
}

// burst sends cfg.clients requests at once, each again after a refusal,
// samples the child's RSS every 10 ms until all succeeded, then waits
// cfg.settle.
func burst(ctx context.Context, pid int, send sendFunc, cfg config) (roundResult, error) {
	var res roundResult
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := rss(pid); err == nil && v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, cfg.clients)
	var refused atomic.Int64
	for c := range cfg.clients {
		wg.Go(func() {
			for {
				retry, err := send(ctx)
				if err != nil {
					errs[c] = err
					return
				}
				if retry == 0 {
					return
				}
				refused.Add(1)
				time.Sleep(retry)
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	close(stop)
	<-sampled
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	res.ok, res.refused, res.peak = int64(cfg.clients), refused.Load(), peak.Load()
	var err error
	if res.end, err = rss(pid); err != nil {
		return res, err
	}
	time.Sleep(cfg.settle)
	res.settle, err = rss(pid)
	return res, err
}

// rss is the resident set of process pid, in bytes.
func rss(pid int) (int64, error) { return procStatus(pid, "VmRSS") }

// procStatus reads a field of /proc/PID/status given in kB, in bytes.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %q: %w", field, v, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// waitClosed returns once r reaches EOF.
func waitClosed(r io.Reader) { io.Copy(io.Discard, r) }
