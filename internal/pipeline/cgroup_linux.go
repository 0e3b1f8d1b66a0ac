package pipeline

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the cgroup v2 hierarchy is mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroup is the cgroup v2 of one exec step's command.
type cgroup struct {
	dir string
	fd  int
	l   limits
	cpu bool // cpu.max was set
}

// newCgroup creates a cgroup for a command under parent (default: this
// process's own cgroup), with memory.max and cpu.max from l. It returns nil
// and the reason when it cannot: no cgroup v2, or a parent that does not
// give its children the memory controller.
func newCgroup(parent, name string, l limits) (*cgroup, string) {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err != nil {
		return nil, "cgroup v2 not mounted at " + cgroupRoot
	}
	if parent == "" {
		own, err := ownCgroup("/proc/self/cgroup")
		if err != nil {
			return nil, "cgroup v2: " + err.Error()
		}
		parent = filepath.Join(cgroupRoot, own)
	}
	ctl, err := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
	if err != nil {
		return nil, "cgroup v2 not writable: " + err.Error()
	}
	have := strings.Fields(string(ctl))
	if !slices.Contains(have, "memory") {
		// Enabling fails (EBUSY) while the parent holds processes, ours included.
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory +cpu"), 0); err != nil {
			return nil, "cgroup v2 not writable: " + parent + " does not delegate the memory controller"
		}
		have = append(have, "memory", "cpu")
	}
	dir := filepath.Join(parent, "outpost-"+sanitize(name))
	os.Remove(dir) // a leftover of a crash, empty
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, "cgroup v2 not writable: " + err.Error()
	}
	cg := &cgroup{dir: dir, l: l}
	write := func(file, v string) error { return os.WriteFile(filepath.Join(dir, file), []byte(v), 0) }
	if l.memory > 0 {
		if err := write("memory.max", strconv.FormatInt(l.memory, 10)); err != nil {
			os.Remove(dir)
			return nil, "cgroup v2 memory.max: " + err.Error()
		}
		_ = write("memory.swap.max", "0") // absent without swap accounting
	}
	if l.milliCPU > 0 && slices.Contains(have, "cpu") {
		cg.cpu = write("cpu.max", fmt.Sprintf("%d 100000", l.milliCPU*100)) == nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, "cgroup v2: " + err.Error()
	}
	cg.fd = fd
	return cg, ""
}

// attach makes the command start inside the cgroup (clone3 CLONE_INTO_CGROUP).
func (c *cgroup) attach(a *syscall.SysProcAttr) {
	a.UseCgroupFD = true
	a.CgroupFD = c.fd
}

// describe says what the cgroup bounds.
func (c *cgroup) describe() string {
	parts := []string{}
	if c.l.memory > 0 {
		parts = append(parts, "memory.max "+bytesString(c.l.memory))
	}
	if c.cpu {
		parts = append(parts, fmt.Sprintf("cpu.max %dm", c.l.milliCPU))
	}
	if len(parts) == 0 {
		return "no bounds declared"
	}
	return strings.Join(parts, ", ")
}

// remove kills what is left in the cgroup and removes it.
func (c *cgroup) remove() {
	unix.Close(c.fd)
	_ = os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0)
	deadline := time.Now().Add(2 * time.Second)
	for os.Remove(c.dir) != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the kernel empties a killed cgroup shortly
	}
}

// ownCgroup returns this process's cgroup v2 path from /proc/self/cgroup
// (the line "0::PATH").
func ownCgroup(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("no cgroup v2 entry in " + file)
}

// sanitize makes a cgroup folder name.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
