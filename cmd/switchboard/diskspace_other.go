//go:build !unix

package main

import "math"

// diskSpace is not measured on this platform: NaN.
func diskSpace(string) (avail, size float64) { return math.NaN(), math.NaN() }
