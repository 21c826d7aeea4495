//go:build !unix

// Package cputime reads the CPU time this process has used. Benchmarks
// divide it among their operations: on a shared, noisy machine, CPU per
// operation compares runs better than wall-clock rates do.
package cputime

import "time"

// Process is the CPU time this process has used; not read on this system.
func Process() (time.Duration, bool) { return 0, false }
