package bench

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/signer"
)

// The receiver counts each (event, webhook) delivery, so that the report
// says what was lost and what came twice, and refuses a bad signature.
func TestReceiver_TalliesLostDuplicatedAndBadlySigned(t *testing.T) {
	secret, err := signer.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	recv, err := startReceiver(secret, 3, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	good, err := signer.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := signer.NewSecret()
	bad, err := signer.New(other)
	if err != nil {
		t.Fatal(err)
	}
	post := func(s *signer.Signer, id string) int {
		t.Helper()
		body := []byte(`{"id":"` + id + `"}`)
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, recv.URL+"/wh/0", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		s.SetHeaders(req.Header, id, time.Now(), body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, id := range []string{"bench_0", "bench_0", "bench_2"} {
		if code := post(good, id); code != http.StatusNoContent {
			t.Fatalf("delivery of %s answered %d, want 204", id, code)
		}
	}
	if code := post(bad, "bench_1"); code != http.StatusUnauthorized {
		t.Errorf("badly signed delivery answered %d, want 401", code)
	}
	if lost, dup := recv.tally(); lost != 1 || dup != 1 {
		t.Errorf("tally: lost %d, duplicated %d; want 1 (bench_1) and 1 (bench_0)", lost, dup)
	}
	if n := recv.badSig.Load(); n != 1 {
		t.Errorf("bad signatures %d, want 1", n)
	}
	if n := recv.received.Load(); n != 3 {
		t.Errorf("received %d, want 3", n)
	}
	recv.reset()
	if lost, dup := recv.tally(); lost != 3 || dup != 0 {
		t.Errorf("after reset: lost %d, duplicated %d; want 3 and 0", lost, dup)
	}
}

// Run checks the whole configuration before it starts anything, and names
// every bad flag at once.
func TestRun_NamesEveryBadFlag(t *testing.T) {
	err := Run(context.Background(), Config{Fanout: 101, BadShare: 1, Rounds: 1, Workers: 1, PayloadSize: 512}, nil, nil)
	if err == nil {
		t.Fatal("Run ran with --events 0")
	}
	for _, want := range []string{"--events", "--fanout", "--bad-share"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestSumMetric_AddsTheLinesOfAName(t *testing.T) {
	lines := []string{
		`switchboard_deliveries_total{outcome="retry_scheduled"} 3`,
		`switchboard_deliveries_total{outcome="dead_lettered"} 2`,
		`switchboard_deliveries_total_other{outcome="x"} 100`,
	}
	if got := sumMetric(lines, "switchboard_deliveries_total"); got != 5 {
		t.Errorf("sum of switchboard_deliveries_total: %v, want 5", got)
	}
	if got := sumMetric(lines, `switchboard_deliveries_total{outcome="dead_lettered"}`); got != 2 {
		t.Errorf("sum of the dead_lettered line: %v, want 2", got)
	}
}
