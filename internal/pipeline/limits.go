package pipeline

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// An exec step's command runs with enforced limits: in a cgroup v2 of its
// own (memory.max, cpu.max) where the engine may create one (under
// Options.CgroupParent, or its own cgroup when that delegates the memory
// controller to its children), else under resource limits (setrlimit)
// that a small helper sets before it executes the command: the engine's
// own binary run again as outpost-pipeline-exec (see init below), so no
// outside tool is needed. The step's log says which applied.
//
// Memory is bounded only for a step that declares resources.memory: the
// default request (64Mi) is a scheduling estimate, not a bound. Under
// rlimits the bound is on address space, which counts memory a program
// reserves but never touches: give such programs room.

// Names of the helper protocol.
const (
	// limitsEnv carries the limits to the helper: as=BYTES,cpu=SECONDS,nofile=N.
	limitsEnv = "OUTPOST_PIPELINE_EXEC_LIMITS"
	// helperArg0 is the helper's argv[0]; the command follows.
	helperArg0 = "outpost-pipeline-exec"
)

// defaultNoFile is the open-file limit of a command.
const defaultNoFile = 4096

// limits are what an exec step's command may use.
type limits struct {
	memory     int64 // bytes; 0 for no bound
	milliCPU   int64 // granted; 0 for no bound
	cpuSeconds int64 // CPU time, from the timeout; 0 for no bound
	nofile     uint64
}

// planLimits returns the limits of an exec step: its granted memory when it
// declares memory, its granted CPU, a CPU time of its timeout times its
// cores, and defaultNoFile open files.
func planLimits(env *stepEnv) limits {
	l := limits{milliCPU: env.granted.MilliCPU, nofile: defaultNoFile}
	if m := env.step.Resources.Memory; m != nil {
		l.memory = m.Value()
		if g := env.granted.Memory; g > 0 && g < l.memory {
			l.memory = g
		}
	}
	if t := env.step.Timeout; t != nil {
		cores := max(1, (l.milliCPU+999)/1000)
		l.cpuSeconds = int64(math.Ceil(t.Duration.Seconds()))*cores + 1
	}
	return l
}

// String describes the rlimits.
func (l limits) rlimitString() string {
	parts := []string{}
	if l.memory > 0 {
		parts = append(parts, "address space "+bytesString(l.memory))
	}
	if l.cpuSeconds > 0 {
		parts = append(parts, fmt.Sprintf("cpu time %ds", l.cpuSeconds))
	}
	parts = append(parts, fmt.Sprintf("open files %d", l.nofile))
	return strings.Join(parts, ", ")
}

// limitedCommand returns the command argv under limits l, a function to
// call once it ended, and what enforces the limits, for the log. The
// returned command's Env holds what the helper needs: append, do not
// replace.
func limitedCommand(ctx context.Context, argv []string, l limits, name string, cgroupParent string) (*exec.Cmd, func(), string, error) {
	cg, why := newCgroup(cgroupParent, name, l)
	if cg != nil {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{}
		cg.attach(cmd.SysProcAttr)
		return cmd, cg.remove, "cgroup v2 " + cg.dir + " (" + cg.describe() + ")", nil
	}
	cmd := exec.CommandContext(ctx, "/proc/self/exe", argv...)
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, "", fmt.Errorf("find this program to set limits: %w", err)
		}
		cmd = exec.CommandContext(ctx, exe, argv...)
	}
	cmd.Args[0] = helperArg0
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	spec := fmt.Sprintf("as=%d,cpu=%d,nofile=%d", l.memory, l.cpuSeconds, l.nofile)
	cmd.Env = []string{limitsEnv + "=" + spec}
	return cmd, func() {}, "rlimit (" + why + "): " + l.rlimitString(), nil
}

// init turns this program into the helper when it was started as one: it
// sets the limits and executes the command, never returning.
func init() {
	if len(os.Args) > 1 && os.Args[0] == helperArg0 {
		if spec, ok := os.LookupEnv(limitsEnv); ok {
			execLimited(spec, os.Args[1:])
		}
	}
}

// execLimited sets the rlimits spec describes and executes argv.
func execLimited(spec string, argv []string) {
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "outpost: %v\n", err)
		os.Exit(127)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fail(err)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, limitsEnv+"=") {
			env = append(env, kv)
		}
	}
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			fail(fmt.Errorf("limit %q: %w", kv, err))
		}
		if n == 0 {
			continue
		}
		var res int
		switch k {
		case "as":
			res = syscall.RLIMIT_AS
		case "cpu":
			res = syscall.RLIMIT_CPU
		case "nofile":
			res = syscall.RLIMIT_NOFILE
		default:
			fail(fmt.Errorf("unknown limit %q", k))
		}
		var cur syscall.Rlimit
		if err := syscall.Getrlimit(res, &cur); err == nil && cur.Max < n {
			n = cur.Max // a limit cannot be raised above the hard one
		}
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
			fail(fmt.Errorf("set limit %s: %w", kv, err))
		}
	}
	fail(syscall.Exec(path, argv, env))
}
