//go:build unix

package main

import (
	"math"
	"syscall"
)

// diskSpace returns the bytes available to this process and the size of
// the filesystem of dir; NaN when it cannot be read.
func diskSpace(dir string) (avail, size float64) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return math.NaN(), math.NaN()
	}
	return float64(st.Bavail) * float64(st.Bsize), float64(st.Blocks) * float64(st.Bsize)
}
