package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

// auditTotal is the total of `switchboard audit --json`.
type auditTotal struct {
	EventsAccepted     int `json:"events_accepted"`
	DeliveriesExpected int `json:"deliveries_expected"`
	Delivered          int `json:"delivered"`
	DeadLettered       int `json:"dead_lettered"`
	Retrying           int `json:"retrying"`
	Pending            int `json:"pending"`
	WebhookDeleted     int `json:"webhook_deleted"`
	Unaccounted        int `json:"unaccounted"`
}

// audit runs `switchboard audit` against the registry, as an operator
// would, with a grace of a second: the strictest it takes.
func (r *registryProc) audit(ctx context.Context, t *testing.T) (total auditTotal, truncated bool, out string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, buildSwitchboard(t), "audit", "--api-url", r.url, "--api-key", testKey,
		"--since", "1h", "--grace", "1s", "--json")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run() // exits 1 when a delivery is unaccounted: the output says which
	var rep struct {
		Total     auditTotal `json:"total"`
		Truncated bool       `json:"truncated"`
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
		t.Fatalf("switchboard audit: %v (%v)\n%s%s", err, jerr, stdout.Bytes(), stderr.Bytes())
	}
	return rep.Total, rep.Truncated, stdout.String() + stderr.String()
}

// mustAuditClean waits until `switchboard audit` has heard of every one
// of the n deliveries owed (their attempt records ingested), then fails
// the test unless each of the n events accepted owed one delivery, all
// delivered, none unaccounted.
func mustAuditClean(ctx context.Context, t *testing.T, r *registryProc, n int) {
	t.Helper()
	// A budget of its own: the faults may have spent the test's.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var got auditTotal
	var truncated bool
	var out string
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, truncated, out = r.audit(ctx, t)
		if got.Delivered >= n && !truncated || time.Now().After(deadline) || got.Unaccounted > 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("switchboard audit: %+v", got)
	want := auditTotal{EventsAccepted: n, DeliveriesExpected: n, Delivered: n}
	if got != want || truncated {
		t.Errorf("switchboard audit: %+v (truncated %v), want %+v\n%s", got, truncated, want, out)
	}
}
