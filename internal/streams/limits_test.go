package streams_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// Setup applies the age and size limits asked for, but keeps a larger
// limit found on a stream (an operator's) unless told to shrink it, and
// logs every limit it changes or keeps.
func TestSetup_Limits(t *testing.T) {
	env := testenv.StartJetStream(t) // set up with the defaults
	ctx := context.Background()
	info := func(name string) (time.Duration, int64) {
		t.Helper()
		s, err := env.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		c := s.CachedInfo().Config
		return c.MaxAge, c.MaxBytes
	}
	setup := func(cfg streams.Config) string {
		t.Helper()
		var logs bytes.Buffer
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		if err := streams.Setup(ctx, env.JS, cfg); err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}

	// Raised by flags: applied and logged. A size cap on a stream without
	// one lowers what it keeps: kept off, and logged, without shrinking.
	cfg := streams.DefaultConfig()
	cfg.EventsMaxAge, cfg.DeadMaxBytes = 30*24*time.Hour, 1<<30
	logs := setup(cfg)
	if age, _ := info(streams.Events); age != 30*24*time.Hour {
		t.Errorf("SB_EVENTS max age %v, want 720h", age)
	}
	if _, size := info(streams.Dead); size != -1 {
		t.Errorf("SB_DEAD max bytes %d, want unlimited kept", size)
	}
	if !strings.Contains(logs, `msg="stream limit changed" stream=SB_EVENTS limit=max_age from=168h0m0s to=720h0m0s`) ||
		!strings.Contains(logs, `stream=SB_DEAD limit=max_bytes kept=unlimited asked=1073741824B`) {
		t.Errorf("raising limits logged:\n%s", logs)
	}

	// A process with the defaults keeps the larger age, and says so.
	logs = setup(streams.DefaultConfig())
	if age, _ := info(streams.Events); age != 30*24*time.Hour {
		t.Errorf("SB_EVENTS max age %v after a start with the defaults, want 720h kept", age)
	}
	if !strings.Contains(logs, "stream limit kept") || !strings.Contains(logs, "kept=720h0m0s") {
		t.Errorf("keeping a larger limit logged:\n%s", logs)
	}

	// Told to shrink: lowered.
	cfg = streams.DefaultConfig()
	cfg.ShrinkLimits, cfg.DeadMaxBytes = true, 1<<20
	setup(cfg)
	if age, _ := info(streams.Events); age != 7*24*time.Hour {
		t.Errorf("SB_EVENTS max age %v after shrinking, want 168h", age)
	}
	if _, size := info(streams.Dead); size != 1<<20 {
		t.Errorf("SB_DEAD max bytes %d after shrinking, want 1 MiB", size)
	}
	// Nothing to change: nothing logged.
	if logs := setup(cfg); logs != "" {
		t.Errorf("a start with the same limits logged:\n%s", logs)
	}
}
