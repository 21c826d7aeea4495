package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the switchboard binary: run
// with SB_TEST_MAIN=1 it is the command, so that the outage bench has a
// serve process to start without a build of its own.
func TestMain(m *testing.M) {
	if os.Getenv("SB_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBenchOutage_MeasuresAServeProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SB_TEST_MAIN", "1") // for the child, which inherits it
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "outage", "--binary", exe, "--events", "300", "--clients", "4", "--at", "6s,0s", "--cpu-window", "2s"}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("bench outage: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	t.Log(out)
	if !strings.Contains(out, "300 events through POST /v1/events from 4 keep-alive clients") {
		t.Errorf("no summary of the publish in:\n%s", out)
	}
	// | after | RSS | CPU | deferrals | retries scheduled | dead-lettered |
	rows := regexp.MustCompile(`(?m)^\| (\S+) \| (\d+) MB \| [\d.]+% \| (\d+) \| (\d+) \| (\d+) \|$`).FindAllStringSubmatch(out, -1)
	if len(rows) != 2 || rows[0][1] != "0s" || rows[1][1] != "6s" {
		t.Fatalf("want rows for 0s and 6s, in that order, got %q in:\n%s", rows, out)
	}
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	if rss := num(rows[1][2]); rss < 10 {
		t.Errorf("RSS of the serve process %d MB: not read from its /proc entry", rss)
	}
	// Every event's first attempt is refused within the 6 s, and retried
	// (the first retry comes 5 s later, give or take 20 %).
	if retries := num(rows[1][4]); retries < 300 {
		t.Errorf("retries scheduled 6 s after the last publish: %d, want at least one per event (300)", retries)
	}
	if !regexp.MustCompile(`peak RSS \(VmHWM\) [1-9]\d* MB; CPU [\d.]+s in the first`).MatchString(out) {
		t.Errorf("no peak RSS and CPU line in:\n%s", out)
	}
}

func TestBenchOutage_NamesEveryBadFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"bench", "outage", "--events", "0", "--clients", "0", "--at", "0s,soon"}, &stdout, &stderr)
	if err == nil {
		t.Fatal("bench outage ran with --events 0")
	}
	for _, want := range []string{"--events", "--clients", `"soon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
