//go:build !linux

package durable

import "os"

// startWriteback does nothing where the kernel has no sync_file_range; the
// final fsync writes everything.
func startWriteback(f *os.File, off, n int64) {}
