package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Ways to fill an agent's disk.
const (
	// DiskTmpfs gives each agent's data directory a small tmpfs of its own
	// and fills it with a ballast file: writes fail with ENOSPC, as on a
	// full disk. It needs the right to mount (root, or CAP_SYS_ADMIN).
	DiskTmpfs = "tmpfs"
	// DiskFsize sets the agent process's RLIMIT_FSIZE to zero: every write
	// that would grow a file fails with EFBIG. It needs no privilege, but
	// unlike a full disk it also fails writes within a file's size.
	DiskFsize = "fsize"
	// DiskOff leaves disks alone: disk-full faults are skipped.
	DiskOff = "off"
	// DiskAuto picks tmpfs where this process may mount, else fsize.
	DiskAuto = "auto"
)

// tmpfsSize is the size of each agent's tmpfs: room for a few versions of
// every deployment, with their partial transfers.
const tmpfsSize = 96 << 20

// disks fills and frees agents' disks.
type disks struct {
	mode    string
	roots   []string // each agent's file system root (its tmpfs)
	mounted []bool
	full    []bool
}

// newDisks prepares the disks of the agents whose roots are given (made
// here), in mode (DiskAuto picks one).
func newDisks(mode string, roots []string) (*disks, error) {
	d := &disks{mode: mode, roots: roots, mounted: make([]bool, len(roots)), full: make([]bool, len(roots))}
	if mode == "" || mode == DiskAuto {
		d.mode = DiskFsize
		if canMount(filepath.Dir(roots[0])) {
			d.mode = DiskTmpfs
		}
	}
	switch d.mode {
	case DiskTmpfs, DiskFsize, DiskOff:
	default:
		return nil, fmt.Errorf("disk-full mode %q: want auto, tmpfs, fsize or off", mode)
	}
	for i, r := range roots {
		if err := os.MkdirAll(r, 0o700); err != nil {
			d.close()
			return nil, err
		}
		if d.mode == DiskTmpfs {
			if err := unix.Mount("tmpfs", r, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", tmpfsSize)); err != nil {
				d.close()
				return nil, fmt.Errorf("mount a tmpfs on %s: %w", r, err)
			}
			d.mounted[i] = true
		}
	}
	return d, nil
}

// canMount reports whether a tmpfs can be mounted (and unmounted) under dir.
func canMount(dir string) bool {
	probe, err := os.MkdirTemp(dir, "mount-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(probe)
	if err := unix.Mount("tmpfs", probe, "tmpfs", 0, "size=64k"); err != nil {
		return false
	}
	return unix.Unmount(probe, unix.MNT_DETACH) == nil
}

// ballast is the file that fills an agent's tmpfs.
func (d *disks) ballast(i int) string { return filepath.Join(d.roots[i], "ballast") }

// fill makes agent i's disk full; pid is its process, when running.
func (d *disks) fill(i, pid int) error {
	if d.full[i] {
		return nil
	}
	switch d.mode {
	case DiskTmpfs:
		f, err := os.OpenFile(d.ballast(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("fill disk: %w", err)
		}
		buf := make([]byte, 1<<20)
		for {
			if _, err := f.Write(buf); err != nil {
				f.Close()
				if !errors.Is(err, syscall.ENOSPC) {
					return fmt.Errorf("fill disk: %w", err)
				}
				break
			}
		}
	case DiskFsize:
		if pid > 0 {
			if err := setFsize(pid, 0); err != nil {
				return err
			}
		}
	}
	d.full[i] = true
	return nil
}

// free gives agent i's disk its space back; pid is its process, when running.
func (d *disks) free(i, pid int) error {
	if !d.full[i] {
		return nil
	}
	switch d.mode {
	case DiskTmpfs:
		if err := os.Remove(d.ballast(i)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("free disk: %w", err)
		}
	case DiskFsize:
		if pid > 0 {
			if err := setFsize(pid, unix.RLIM_INFINITY); err != nil {
				return err
			}
		}
	}
	d.full[i] = false
	return nil
}

// started applies a full disk to agent i's new process pid.
func (d *disks) started(i, pid int) error {
	if d.mode == DiskFsize && d.full[i] {
		return setFsize(pid, 0)
	}
	return nil
}

// isFull reports whether agent i's disk is full.
func (d *disks) isFull(i int) bool { return d.full[i] }

// close unmounts the tmpfs file systems.
func (d *disks) close() {
	for i, m := range d.mounted {
		if m {
			_ = unix.Unmount(d.roots[i], unix.MNT_DETACH)
			d.mounted[i] = false
		}
	}
}

// setFsize sets the soft RLIMIT_FSIZE of process pid.
func setFsize(pid int, limit uint64) error {
	rl := unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &rl, nil); err != nil {
		return fmt.Errorf("set RLIMIT_FSIZE of %d: %w", pid, err)
	}
	return nil
}
