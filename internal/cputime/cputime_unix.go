//go:build unix

// Package cputime reads the CPU time this process has used. Benchmarks
// divide it among their operations: on a shared, noisy machine, CPU per
// operation compares runs better than wall-clock rates do.
package cputime

import (
	"syscall"
	"time"
)

// Process is the CPU time, user and system, that this process has used;
// false where it cannot be read.
func Process() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
