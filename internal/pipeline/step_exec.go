package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// MaxValueOutput is the size of the largest exec output file that is a
// value (its text, trimmed) rather than an artifact (its digest).
const MaxValueOutput = 256

// killWait is how long a killed command's pipes may stay open (held by
// its children) before the engine stops reading them.
const killWait = 5 * time.Second

// runExec runs a command in a fresh working folder, in its own process
// group, with enforced limits (limits.go), its inputs as files, and reads
// its declared outputs from files under $OUTPOST_OUTPUTS. The command's
// output goes to the step's log.
//
// The environment is not the engine's (which may hold credentials): PATH,
// LANG and TZ pass, HOME and TMPDIR are in the working folder, the step's
// env is added, and then OUTPOST_OUTPUTS, OUTPOST_INPUT_<NAME> (the file of
// input NAME, upper-cased, '-' as '_'), OUTPOST_RUN, OUTPOST_STEP,
// OUTPOST_PIPELINE, OUTPOST_CLUSTER, OUTPOST_THREADS (the cores granted)
// and OUTPOST_MEMORY (the bytes granted).
//
// An output file of at most MaxValueOutput bytes of UTF-8 text is a value
// (its text, spaces trimmed) that conditions can read; a larger one is
// stored in the engine's layout and the output is its digest.
func runExec(ctx context.Context, env *stepEnv) (map[string]string, error) {
	x := env.step.Exec
	work := filepath.Join(env.workDir, fmt.Sprintf("attempt-%d", env.attempt))
	if err := os.RemoveAll(work); err != nil {
		return nil, err
	}
	outDir, inDir, tmpDir := filepath.Join(work, "outputs"), filepath.Join(work, "inputs"), filepath.Join(work, "tmp")
	for _, d := range []string{outDir, inDir, tmpDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	vars := []string{"HOME=" + work, "TMPDIR=" + tmpDir}
	for _, k := range []string{"PATH", "LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			vars = append(vars, k+"="+v)
		}
	}
	for _, k := range sortedKeys(x.Env) {
		vars = append(vars, k+"="+x.Env[k])
	}
	for _, name := range sortedKeys(env.inputs) {
		file := filepath.Join(inDir, name)
		if err := writeInput(env, name, file); err != nil {
			return nil, fmt.Errorf("input %s: %w", name, err)
		}
		vars = append(vars, "OUTPOST_INPUT_"+envName(name)+"="+file)
	}
	vars = append(vars,
		"OUTPOST_OUTPUTS="+outDir,
		"OUTPOST_RUN="+env.run.name,
		"OUTPOST_STEP="+env.step.Name,
		"OUTPOST_PIPELINE="+env.run.pipeline,
		"OUTPOST_CLUSTER="+env.run.cluster,
		"OUTPOST_THREADS="+strconv.Itoa(env.threads()),
		"OUTPOST_MEMORY="+strconv.FormatInt(env.granted.Memory, 10),
	)

	lim := planLimits(env)
	cmd, cleanup, how, err := limitedCommand(ctx, x.Command, lim, env.run.name+"-"+env.step.Name, env.e.opts.CgroupParent)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	env.log.Printf("limits: %s", how)
	env.note = "limits: " + how
	cmd.Dir = work
	cmd.Env = append(vars, cmd.Env...)
	tail := &tailBuffer{max: 4 << 10}
	out := io.MultiWriter(env.log, tail)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr.Setpgid = true
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killWait
	env.log.Printf("running %s", strings.Join(x.Command, " "))
	err = cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left running in its group goes too
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		msg := err.Error()
		if last := tail.lastLine(); last != "" {
			msg += ": " + last
		}
		return nil, fmt.Errorf("command failed: %s (limits: %s)", msg, how)
	}
	outputs := map[string]string{}
	for _, name := range x.Outputs {
		v, err := readOutput(env, filepath.Join(outDir, name))
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		outputs[name] = v
	}
	return outputs, nil
}

// envName is an input's name in environment variables.
func envName(name string) string { return strings.ReplaceAll(strings.ToUpper(name), "-", "_") }

// writeInput writes input name to file: a copy of its artifact, or its value.
func writeInput(env *stepEnv, name, file string) error {
	v := env.inputs[name]
	if d, ok := artifactDigest(v); ok && env.e.layout.Has(d) {
		return copyFile(env.e.layout.BlobPath(d), file)
	}
	return os.WriteFile(file, []byte(v), 0o644)
}

// readOutput reads a declared output: a value, or an artifact's digest.
func readOutput(env *stepEnv, path string) (string, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", errors.New("the command did not write it (a file named so under $OUTPOST_OUTPUTS)")
	}
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	if fi.Size() <= MaxValueOutput {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if utf8.Valid(b) && !strings.ContainsRune(string(b), 0) {
			return strings.TrimSpace(string(b)), nil
		}
	}
	d, err := env.e.layout.PutFile(path)
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// lastLine returns the last line that is not empty, cut to 200 bytes.
func (t *tailBuffer) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.b)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if len(last) > 200 {
		last = last[:200] + "..."
	}
	return last
}
