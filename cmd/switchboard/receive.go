package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/switchboard-hq/switchboard/signer"
)

type receiveConfig struct {
	Listen string
	Secret string
	Status int
}

func receiveCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := receiveConfig{Listen: "127.0.0.1:9000", Status: http.StatusNoContent}
	fs := flag.NewFlagSet("receive", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to receive webhooks on")
	fs.StringVar(&cfg.Secret, "secret", cfg.Secret, "the webhook's secret (whsec_...), to verify signatures; empty skips verification")
	fs.IntVar(&cfg.Status, "status", cfg.Status, "HTTP status to answer with (e.g. 500 to watch retries)")
	return &ffcli.Command{
		Name:       "receive",
		ShortUsage: "switchboard receive [--listen ADDR] [--secret whsec_...]",
		ShortHelp:  "print (and verify) the webhooks sent to an address, for trying things out",
		LongHelp: `Listens on --listen and prints every request it gets: the Standard Webhooks
headers, the body, and whether the signature verifies with --secret.
Answers every request with --status.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, _ []string) error {
			return cfg.run(ctx, stdout)
		},
	}
}

func (c receiveConfig) run(ctx context.Context, stdout io.Writer) error {
	if c.Status < 100 || c.Status > 599 {
		return fmt.Errorf("--status %d is not an HTTP status", c.Status)
	}
	var verifier *signer.Signer
	if c.Secret != "" {
		v, err := signer.New(c.Secret)
		if err != nil {
			return fmt.Errorf("--secret: %w", err)
		}
		verifier = v
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	var mu sync.Mutex // one request printed at a time
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, "%s %s %s\n", time.Now().Format(time.RFC3339Nano), r.Method, r.URL.RequestURI())
		for _, h := range []string{signer.HeaderID, signer.HeaderTimestamp, signer.HeaderSignature} {
			fmt.Fprintf(stdout, "  %s: %s\n", h, r.Header.Get(h))
		}
		switch {
		case err != nil:
			fmt.Fprintf(stdout, "  body: unreadable: %v\n", err)
		case verifier == nil:
			fmt.Fprintln(stdout, "  signature: not checked (no --secret)")
		default:
			if verr := verifier.Verify(r.Header, body, signer.DefaultTolerance, time.Now()); verr != nil {
				fmt.Fprintf(stdout, "  signature: FAILED: %v\n", verr)
			} else {
				fmt.Fprintln(stdout, "  signature: ok")
			}
		}
		fmt.Fprintf(stdout, "  body: %s\n\n", body)
		w.WriteHeader(c.Status)
	})}
	fmt.Fprintf(stdout, "receiving on http://%s (answering %d)\n\n", ln.Addr(), c.Status)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
