package consumer

import (
	"testing"
	"time"
)

func TestRetryPolicy_Delay(t *testing.T) {
	p := RetryPolicy{InitialInterval: 5 * time.Second, MaxInterval: time.Hour, Multiplier: 4, RandomizationFactor: 0.2}
	for n, base := range map[int]time.Duration{
		1: 5 * time.Second, 2: 20 * time.Second, 3: 80 * time.Second, 4: 320 * time.Second,
		5: 1280 * time.Second, 6: time.Hour, 10: time.Hour,
	} {
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
		seen := map[time.Duration]bool{}
		for range 50 {
			d := p.delay(n, 0)
			if d < lo || d > hi {
				t.Fatalf("delay(%d) = %v, want within [%v, %v]", n, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("delay(%d) never varies: no jitter", n)
		}
	}
	if d := p.delay(1, 10*time.Second); d != 10*time.Second {
		t.Errorf("with Retry-After 10s: %v", d)
	}
	if d := p.delay(1, 2*time.Hour); d != time.Hour {
		t.Errorf("with Retry-After 2h: %v, want the 1h maximum", d)
	}
}

func TestRetryPolicy_Validate(t *testing.T) {
	if err := DefaultRetryPolicy().Validate(); err != nil {
		t.Errorf("default policy: %v", err)
	}
	for name, p := range map[string]RetryPolicy{
		"no initial":        {MaxInterval: time.Second, Multiplier: 2},
		"max below initial": {InitialInterval: time.Minute, MaxInterval: time.Second, Multiplier: 2},
		"shrinking":         {InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 0.5},
		"jitter of 100%":    {InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2, RandomizationFactor: 1},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestScheduleAt_RoundsUp(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 300_000_000, time.UTC)
	if got, want := scheduleAt(now, time.Second), time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC); !got.Equal(want) {
		t.Errorf("scheduleAt = %v, want %v", got, want)
	}
	exact := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := scheduleAt(exact, time.Second); !got.Equal(exact.Add(time.Second)) {
		t.Errorf("scheduleAt on a whole second = %v", got)
	}
}
