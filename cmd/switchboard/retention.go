package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// streamLimits are the retention flags of the streams that keep history
// (SB_EVENTS, SB_DEAD, SB_ATTEMPTS). Every process sets the streams up at
// start, so every process takes them; a larger limit already on a stream
// stays unless --shrink-stream-limits (see streams.Config.ShrinkLimits).
type streamLimits struct {
	EventsMaxAge, DeadMaxAge, AttemptsMaxAge       time.Duration
	EventsMaxBytes, DeadMaxBytes, AttemptsMaxBytes byteSize
	Shrink                                         bool
}

func defaultStreamLimits() streamLimits {
	d := streams.DefaultConfig()
	return streamLimits{EventsMaxAge: d.EventsMaxAge, DeadMaxAge: d.DeadMaxAge, AttemptsMaxAge: d.AttemptsMaxAge}
}

func (l *streamLimits) register(fs *flag.FlagSet) {
	fs.DurationVar(&l.EventsMaxAge, "stream-events-max-age", l.EventsMaxAge, "how long SB_EVENTS keeps accepted events, for recovery and replay; 0 forever")
	fs.Var(&l.EventsMaxBytes, "stream-events-max-bytes", "size cap of SB_EVENTS per replica, e.g. 50GiB (oldest events go first); 0 none")
	fs.DurationVar(&l.DeadMaxAge, "stream-dead-max-age", l.DeadMaxAge, "how long SB_DEAD keeps dead letters; 0 forever")
	fs.Var(&l.DeadMaxBytes, "stream-dead-max-bytes", "size cap of SB_DEAD per replica (oldest dead letters go first); 0 none")
	fs.DurationVar(&l.AttemptsMaxAge, "stream-attempts-max-age", l.AttemptsMaxAge, "how long SB_ATTEMPTS keeps attempt records for the registry to read (it keeps its own copy: --attempt-retention); 0 forever")
	fs.Var(&l.AttemptsMaxBytes, "stream-attempts-max-bytes", "size cap of SB_ATTEMPTS per replica; records the registry has not read yet are lost past it; 0 none")
	fs.BoolVar(&l.Shrink, "shrink-stream-limits", l.Shrink, "let the stream limits above lower the limits of existing streams; without it a larger limit found on a stream is kept (and logged)")
}

// validate returns the errors of negative limits.
func (l streamLimits) validate() []error {
	var errs []error
	for name, d := range map[string]time.Duration{
		"--stream-events-max-age": l.EventsMaxAge, "--stream-dead-max-age": l.DeadMaxAge, "--stream-attempts-max-age": l.AttemptsMaxAge,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must be 0 (forever) or positive, got %v", name, d))
		}
	}
	return errs
}

// config returns the streams.Config of the limits and replicas.
func (l streamLimits) config(replicas int) streams.Config {
	return streams.Config{
		Replicas:     replicas,
		EventsMaxAge: l.EventsMaxAge, DeadMaxAge: l.DeadMaxAge, AttemptsMaxAge: l.AttemptsMaxAge,
		EventsMaxBytes: int64(l.EventsMaxBytes), DeadMaxBytes: int64(l.DeadMaxBytes), AttemptsMaxBytes: int64(l.AttemptsMaxBytes),
		ShrinkLimits: l.Shrink,
	}
}

// byteSize is a flag of bytes: a number with an optional unit, B, KB, MB,
// GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
type byteSize int64

var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func (b *byteSize) String() string {
	if b == nil || *b == 0 {
		return "0"
	}
	for i := 3; i >= 0; i-- { // TiB down to KiB
		if u := byteUnits[i]; int64(*b)%u.factor == 0 {
			return strconv.FormatInt(int64(*b)/u.factor, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	factor := int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, factor = strings.TrimSpace(rest), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/factor {
		return fmt.Errorf("want a size such as 500MiB, 20GB or 1048576, got %q", s)
	}
	*b = byteSize(n * factor)
	return nil
}
