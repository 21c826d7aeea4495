package bench

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// processSamples reads a process's RSS and CPU from /proc every 200 ms.
type processSamples struct {
	pid  int
	mu   sync.Mutex
	at   []time.Time
	cpu  []time.Duration
	last int64 // RSS at the latest sample
	peak int64 // the largest RSS sampled
	done chan struct{}
	wg   sync.WaitGroup
}

// sampleProcess samples pid until stop.
func sampleProcess(pid int) *processSamples {
	s := &processSamples{pid: pid, done: make(chan struct{})}
	s.take()
	s.wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.take()
			case <-s.done:
				return
			}
		}
	})
	return s
}

func (s *processSamples) take() {
	cpu, ok := procCPU(s.pid)
	rss := procStatus(s.pid, "VmRSS:")
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.at, s.cpu = append(s.at, time.Now()), append(s.cpu, cpu)
	}
	s.last, s.peak = rss, max(s.peak, rss)
}

func (s *processSamples) stop() { close(s.done); s.wg.Wait() }

func (s *processSamples) rss() int64 { s.take(); s.mu.Lock(); defer s.mu.Unlock(); return s.last }

func (s *processSamples) peakRSS() int64 { s.mu.Lock(); defer s.mu.Unlock(); return s.peak }

// hwm is the process's peak RSS, as the kernel counted it.
func (s *processSamples) hwm() int64 { return procStatus(s.pid, "VmHWM:") }

// cpuAt is the process's CPU time at the last sample at or before t (the
// first sample when t is before it).
func (s *processSamples) cpuAt(t time.Time) time.Duration {
	s.take()
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.at, t, func(a, t time.Time) int { return a.Compare(t) })
	switch {
	case i < len(s.at) && s.at[i].Equal(t):
	case i > 0:
		i--
	}
	if i >= len(s.cpu) {
		return 0
	}
	return s.cpu[i]
}

// sampleRSS samples the process's resident set every 200 ms until the
// returned stop, which returns the peak in bytes (0 where /proc is not).
func sampleRSS() (stop func() int64) {
	s := sampleProcess(os.Getpid())
	return func() int64 { s.stop(); return s.peakRSS() }
}

// readRSS returns this process's VmRSS in bytes, 0 when unreadable.
func readRSS() int64 { return procStatus(os.Getpid(), "VmRSS:") }

// procCPU is the user and system CPU time of pid, from /proc/<pid>/stat
// (in USER_HZ, 100 per second on Linux).
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	_, rest, ok := bytes.Cut(b, []byte(") "))
	if !ok {
		return 0, false
	}
	f := strings.Fields(string(rest)) // from field 3 on: utime is field 14, stime 15
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// procStatus is the field of /proc/<pid>/status named key, in bytes (0
// when unreadable).
func procStatus(pid int, key string) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
