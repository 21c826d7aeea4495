package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/switchboard-hq/switchboard/registry/control"
)

type auditConfig struct {
	APIURL  string
	APIKey  string
	Since   string
	Grace   time.Duration
	Limit   int
	JSON    bool
	Timeout time.Duration
}

func auditCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := auditConfig{APIURL: "http://127.0.0.1:8080", Since: "1h", Grace: control.DefaultAuditGrace,
		Limit: control.DefaultAuditLimit, Timeout: 2 * time.Minute}
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.StringVar(&cfg.APIURL, "api-url", cfg.APIURL, "Switchboard API to audit")
	fs.StringVar(&cfg.APIKey, "api-key", cfg.APIKey, "admin API key (Bearer) for --api-url")
	fs.StringVar(&cfg.Since, "since", cfg.Since, "start of the window: a duration back from now (1h) or an RFC 3339 time")
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "how long a delivery may go unheard of before it counts as unaccounted")
	fs.IntVar(&cfg.Limit, "limit", cfg.Limit, "events, and deliveries owed, read at most each")
	fs.BoolVar(&cfg.JSON, "json", cfg.JSON, "print the API's JSON instead of a table")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "how long to wait for the audit")
	return &ffcli.Command{
		Name:       "audit",
		ShortUsage: "switchboard audit --api-key KEY [--since 1h] [flags]",
		ShortHelp:  "account for every delivery owed, per tenant; fail if one is unaccounted",
		LongHelp: `Asks the registry (GET /v1/audit, admin keys only) to set every delivery the
matcher owed since --since against what became of it, and prints per tenant
the events accepted, deliveries expected, delivered, dead-lettered,
retrying, pending, dropped with their deleted webhook, and unaccounted, then
the ids of every unaccounted delivery. Exits 1 when one is unaccounted, or
when the audit could not cover the whole window (truncated).

  switchboard audit --api-key sk_... --since 1h`,
		FlagSet: fs,
		Exec: func(ctx context.Context, _ []string) error {
			ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
			return cfg.run(ctx, stdout, stderr)
		},
	}
}

func (c auditConfig) run(ctx context.Context, stdout, stderr io.Writer) error {
	q := url.Values{"since": {c.Since}, "grace": {c.Grace.String()}, "limit": {strconv.Itoa(c.Limit)}}
	var raw json.RawMessage
	if err := (apiClient{url: c.APIURL, key: c.APIKey}).do(ctx, http.MethodGet, "/v1/audit?"+q.Encode(), nil, &raw); err != nil {
		return err
	}
	var rep control.AuditReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("decode the audit: %w", err)
	}
	if c.JSON {
		fmt.Fprintf(stdout, "%s\n", raw)
	} else {
		printAudit(stdout, &rep)
	}
	for _, t := range rep.Truncation {
		fmt.Fprintf(stderr, "truncated: %s\n", t)
	}
	switch {
	case rep.Total.Unaccounted > 0:
		return fmt.Errorf("%d deliveries unaccounted for", rep.Total.Unaccounted)
	case rep.Truncated:
		return fmt.Errorf("the audit did not cover the whole window; narrow --since or raise --limit")
	}
	return nil
}

// printAudit writes rep as a table, a line per tenant and one for all, then
// the unaccounted deliveries.
func printAudit(w io.Writer, rep *control.AuditReport) {
	fmt.Fprintf(w, "audit %s .. %s (grace %gs)\n", rep.Since.Format(time.RFC3339), rep.Until.Format(time.RFC3339), rep.GraceSeconds)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tenant\tevents\texpected\tdelivered\tdead_lettered\tretrying\tpending\twebhook_deleted\tunaccounted\t")
	line := func(name string, c control.AuditCounts) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, c.EventsAccepted, c.DeliveriesExpected, c.Delivered,
			c.DeadLettered, c.Retrying, c.Pending, c.WebhookDeleted, c.Unaccounted)
	}
	for _, t := range rep.Tenants {
		line(t.TenantID, t.AuditCounts)
	}
	line("total", rep.Total)
	tw.Flush()
	for _, t := range rep.Tenants {
		for _, d := range t.UnaccountedDeliveries {
			fmt.Fprintf(w, "unaccounted: tenant %s event %s webhook %s matched %s last outcome %q\n",
				t.TenantID, d.EventID, d.WebhookID, d.MatchedAt.Format(time.RFC3339), d.LastOutcome)
		}
		if n := t.Unaccounted - len(t.UnaccountedDeliveries); n > 0 {
			fmt.Fprintf(w, "unaccounted: tenant %s and %d more\n", t.TenantID, n)
		}
	}
}
