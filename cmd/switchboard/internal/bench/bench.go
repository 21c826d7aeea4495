package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/signer"
)

// Config is `switchboard bench`: each field is the flag named beside it.
type Config struct {
	Events        int           // --events
	Fanout        int           // --fanout
	PayloadSize   int           // --payload-size
	DeadShare     float64       // --dead-share
	BadShare      float64       // --bad-share
	Rounds        int           // --rounds
	Control       bool          // --control
	Workers       int           // --workers
	MaxAckPending int           // --max-ack-pending
	PerWebhook    int           // --max-in-flight-per-webhook; 0 is serve's default
	BreakerFails  int           // --breaker-failures; 0 is serve's default
	Verify        bool          // --verify
	Rate          int           // --rate
	Timeout       time.Duration // --timeout
	DataDir       string        // --data-dir; "": a temporary folder, removed after
	CPUProfile    string        // --cpuprofile
	Backlog       int           // --backlog: deliveries pending for a dead receiver beside the healthy run
	BacklogHooks  int           // --backlog-webhooks: dead receivers, each with a backlog of Backlog
	MemProfile    string        // --memprofile: heap profile once the backlog has settled
	// SettleRetries is how many retry waves of the backlog pass before
	// its settled CPU is measured; 0 means 3. Not a flag: tests take 1.
	SettleRetries int

	// Start starts each system measured end to end.
	Start StartFunc
}

func (c Config) validate() error {
	var errs []error
	if c.Events < 1 {
		errs = append(errs, errors.New("--events must be at least 1"))
	}
	if c.Fanout < 1 || c.Fanout > 100 {
		errs = append(errs, errors.New("--fanout must be 1..100"))
	}
	if c.DeadShare < 0 || c.DeadShare >= 1 {
		errs = append(errs, errors.New("--dead-share must be in [0, 1)"))
	}
	if c.BadShare < 0 || c.BadShare >= 1 {
		errs = append(errs, errors.New("--bad-share must be in [0, 1)"))
	}
	if c.Rounds < 1 {
		errs = append(errs, errors.New("--rounds must be at least 1"))
	}
	if c.BadShare > 0 && c.DeadShare > 0 {
		errs = append(errs, errors.New("--bad-share and --dead-share do not mix: pick one"))
	}
	if c.Backlog < 0 {
		errs = append(errs, errors.New("--backlog must not be negative"))
	}
	if c.BacklogHooks < 0 || c.BacklogHooks > 100 {
		errs = append(errs, errors.New("--backlog-webhooks must be 1..100"))
	}
	if c.Backlog > 0 && (c.BadShare > 0 || c.DeadShare > 0) {
		errs = append(errs, errors.New("--backlog does not mix with --bad-share or --dead-share: pick one"))
	}
	if c.Rate < 0 {
		errs = append(errs, errors.New("--rate must not be negative"))
	}
	if c.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if c.PayloadSize < 128 || c.PayloadSize > switchboard.MaxEventDataSize {
		errs = append(errs, fmt.Errorf("--payload-size must be 128..%d", switchboard.MaxEventDataSize))
	}
	return errors.Join(errs...)
}

// Run runs the bench as c says: the ceiling run, then one end-to-end run,
// or with --bad-share or --backlog --rounds pairs of them; it prints the
// report to stdout and its progress to stderr. It fails on an invalid c
// (every bad flag named) and when a delivery was lost or badly signed.
func Run(ctx context.Context, c Config, stdout, stderr io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.Start == nil {
		return errors.New("bench: no way to start a system (Config.Start)")
	}
	secret, err := signer.NewSecret()
	if err != nil {
		return err
	}
	recv, err := startReceiver(secret, c.Events, c.Fanout, c.Verify)
	if err != nil {
		return err
	}
	defer recv.Close()
	var res result
	res.Expected = c.healthyEvents() * c.Fanout

	fmt.Fprintf(stderr, "bench: ceiling run, %d signed %d-byte POSTs at concurrency %d\n", res.Expected, c.PayloadSize, c.Workers)
	if res.CeilingRate, res.CeilingCPU, err = c.ceiling(ctx, recv, secret, res.Expected); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bench: ceiling %.0f req/s\n", res.CeilingRate)

	if c.BadShare > 0 || c.Backlog > 0 {
		err = c.rounds(ctx, recv, secret, &res, stderr)
	} else {
		err = c.endToEnd(ctx, recv, secret, &res, badReal, stderr)
	}
	if err != nil {
		return err
	}
	c.report(stdout, &res)
	if res.Lost > 0 || res.BadSignatures > 0 {
		return fmt.Errorf("bench: %d deliveries lost, %d bad signatures", res.Lost, res.BadSignatures)
	}
	return nil
}

// rounds runs the pairs of --rounds, alone then beside the bad receivers
// or the backlog, so that each ratio compares neighbours in time on a
// noisy machine. res keeps the last round's run beside them.
func (c Config) rounds(ctx context.Context, recv *receiver, secret string, res *result, stderr io.Writer) error {
	for round := range c.Rounds {
		alone := result{Expected: res.Expected}
		baseline := badNone
		if c.Control {
			baseline = badControl
		}
		fmt.Fprintf(stderr, "bench: round %d/%d: healthy webhooks without bad receivers (control: %v)\n", round+1, c.Rounds, c.Control)
		if err := c.endToEnd(ctx, recv, secret, &alone, baseline, stderr); err != nil {
			return err
		}
		if alone.Lost > 0 {
			return fmt.Errorf("bench: %d deliveries lost in the healthy-only run", alone.Lost)
		}
		recv.reset()
		fmt.Fprintf(stderr, "bench: round %d/%d: beside bad receivers or a backlog\n", round+1, c.Rounds)
		if err := c.endToEnd(ctx, recv, secret, res, badReal, stderr); err != nil {
			return err
		}
		if round < c.Rounds-1 {
			if res.Lost > 0 || res.BadSignatures > 0 {
				return fmt.Errorf("bench: %d deliveries lost, %d bad signatures", res.Lost, res.BadSignatures)
			}
			recv.reset()
		}
		res.AloneRates = append(res.AloneRates, alone.Rate)
		res.BadRates = append(res.BadRates, res.Rate)
		res.AloneP99 = append(res.AloneP99, alone.P99)
		res.BadP99 = append(res.BadP99, res.P99)
	}
	return nil
}
