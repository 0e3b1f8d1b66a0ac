package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"outpost.dev/outpost/internal/chaos"
)

// proc is a child process of the campaign: the hub or an agent.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed once the process exited

	mu     sync.Mutex
	killed bool
	err    error // how it exited
}

// startProc starts bin with args, its output appended to logPath. onExit is
// called, from another goroutine, if the process exits without kill.
func startProc(name, bin string, args []string, logPath string, onExit func(p *proc, err error)) (*proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "--- %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	// Through a pipe, so that a file size limit set on the process
	// (DiskFsize) does not stop its logs.
	w := struct{ io.Writer }{log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		killed := p.killed
		p.mu.Unlock()
		fmt.Fprintf(log, "--- %s exit: %v (killed %v)\n", time.Now().Format(time.RFC3339Nano), err, killed)
		log.Close()
		close(p.done)
		if !killed && onExit != nil {
			onExit(p, err)
		}
	}()
	return p, nil
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (p *proc) kill() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stats reads the process's open file descriptors and threads from /proc,
// and its goroutines from its debugging endpoint at debugAddr
// (--debug-listen).
func (p *proc) stats(ctx context.Context, client *http.Client, debugAddr string) (chaos.ProcStats, error) {
	var st chaos.ProcStats
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid()))
	if err != nil {
		return st, err
	}
	st.FDs = len(fds)
	if st.Threads, err = threads(p.pid()); err != nil {
		return st, err
	}
	st.Goroutines, err = goroutines(ctx, client, debugAddr)
	return st, err
}

// threads reads the number of threads of process pid from /proc.
func threads(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, errors.New("no Threads in /proc status")
}

// goroutines reads the number of goroutines of the process whose debugging
// endpoint is at addr: the first line of its goroutine profile says
// "goroutine profile: total N".
func goroutines(ctx context.Context, client *http.Client, addr string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	n, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile starts with %q", line)
	}
	return strconv.Atoi(n)
}

// waitFile waits until path exists and is not empty, the process exits, or
// the deadline passes.
func waitFile(ctx context.Context, path string, p *proc, within time.Duration) ([]byte, error) {
	deadline := time.Now().Add(within)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return b, nil
		}
		if p != nil && p.exited() {
			if p.err == nil {
				return nil, fmt.Errorf("%s exited before it was ready", p.name)
			}
			return nil, fmt.Errorf("%s exited before it was ready: %w", p.name, p.err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not ready after %s", path, within)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// tailFile returns the last n bytes of a file.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	_, _ = f.ReadAt(b, off)
	return string(b)
}
