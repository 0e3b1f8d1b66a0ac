package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/api/resource"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/bytesize"
)

// detectCapacity measures the machine: CPU cores, total memory, the free
// space of the file system holding dir, and the declared accelerators.
func detectCapacity(dir string, accel []v1alpha1.Accelerator) v1alpha1.Capacity {
	c := v1alpha1.Capacity{
		CPU:          resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		Accelerators: accel,
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if n, ok := parseMemTotal(b); ok {
			c.Memory = resource.NewQuantity(n, resource.BinarySI)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		c.Disk = resource.NewQuantity(int64(st.Bavail)*int64(st.Bsize), resource.BinarySI)
	}
	return c
}

// parseMemTotal returns MemTotal from /proc/meminfo, in bytes.
func parseMemTotal(b []byte) (int64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || n < 0 {
				return 0, false
			}
			if len(f) >= 3 && strings.EqualFold(f[2], "kB") {
				n *= 1024
			}
			return n, true
		}
	}
	return 0, false
}

// ParseAccelerators parses declared accelerators, "TYPE=COUNT" each, such
// as "nvidia.com/gpu=2".
func ParseAccelerators(specs []string) ([]v1alpha1.Accelerator, error) {
	var out []v1alpha1.Accelerator
	for _, s := range specs {
		t, n, ok := strings.Cut(s, "=")
		if !ok || t == "" {
			return nil, fmt.Errorf("accelerator %q: want TYPE=COUNT", s)
		}
		c, err := strconv.ParseInt(n, 10, 64)
		if err != nil || c < 0 {
			return nil, fmt.Errorf("accelerator %q: count must be a non-negative integer", s)
		}
		out = append(out, v1alpha1.Accelerator{Type: t, Count: c})
	}
	return out, nil
}

// ParseBandwidth parses a byte rate such as "10MiB", "500KB", "1.5MB/s" or
// "1000" (bytes). "" means unlimited and gives 0.
func ParseBandwidth(s string) (int64, error) { return bytesize.ParseRate(s) }
