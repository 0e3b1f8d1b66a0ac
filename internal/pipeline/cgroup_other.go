//go:build !linux

package pipeline

import "syscall"

// cgroup is a stand-in: cgroups exist only on Linux.
type cgroup struct{ dir string }

func newCgroup(parent, name string, l limits) (*cgroup, string) {
	return nil, "no cgroups on this system"
}
func (c *cgroup) attach(*syscall.SysProcAttr) {}
func (c *cgroup) describe() string            { return "" }
func (c *cgroup) remove()                     {}
