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
	"github.com/switchboard-hq/switchboard/registry/store"
)

type backlogConfig struct {
	APIURL  string
	APIKey  string
	Tenant  string
	Limit   int
	JSON    bool
	Timeout time.Duration
}

func backlogCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := backlogConfig{APIURL: "http://127.0.0.1:8080", Limit: store.DefaultBacklogLimit, Timeout: 30 * time.Second}
	fs := flag.NewFlagSet("backlog", flag.ContinueOnError)
	fs.StringVar(&cfg.APIURL, "api-url", cfg.APIURL, "Switchboard API to ask")
	fs.StringVar(&cfg.APIKey, "api-key", cfg.APIKey, "API key (Bearer) for --api-url: an admin key sees every tenant, another its own")
	fs.StringVar(&cfg.Tenant, "tenant", cfg.Tenant, "only this tenant's webhooks (a tenant id)")
	fs.IntVar(&cfg.Limit, "limit", cfg.Limit, fmt.Sprintf("webhooks listed at most, largest backlog first (1 to %d)", store.MaxBacklogLimit))
	fs.BoolVar(&cfg.JSON, "json", cfg.JSON, "print the API's JSON instead of a table")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "how long to wait for the answer")
	return &ffcli.Command{
		Name:       "backlog",
		ShortUsage: "switchboard backlog --api-key KEY [--limit N] [flags]",
		ShortHelp:  "list the webhooks with the most deliveries not yet settled",
		LongHelp: `Asks the registry (GET /v1/backlog) for the webhooks with the most deliveries
matched and not yet settled (no delivered or dead_lettered last attempt),
largest first, and prints a line per webhook: tenant, webhook id, name,
status, pending deliveries and when the oldest of them was matched; then
the total over every webhook and when the counts were read.

  switchboard backlog --api-key sk_... --limit 20`,
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			if err := noArgs("backlog", args); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
			return cfg.run(ctx, stdout)
		},
	}
}

func (c backlogConfig) run(ctx context.Context, stdout io.Writer) error {
	q := url.Values{"limit": {strconv.Itoa(c.Limit)}}
	if c.Tenant != "" {
		q.Set("tenant_id", c.Tenant)
	}
	var raw json.RawMessage
	if err := (apiClient{url: c.APIURL, key: c.APIKey}).do(ctx, http.MethodGet, "/v1/backlog?"+q.Encode(), nil, &raw); err != nil {
		return err
	}
	if c.JSON {
		fmt.Fprintf(stdout, "%s\n", raw)
		return nil
	}
	var rep store.BacklogReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("decode the backlog: %w", err)
	}
	printBacklog(stdout, &rep)
	return nil
}

// printBacklog writes rep as a table, a line per webhook, then the total.
func printBacklog(w io.Writer, rep *store.BacklogReport) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tWEBHOOK\tNAME\tSTATUS\tPENDING\tOLDEST")
	for _, b := range rep.Data {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", b.TenantID, b.WebhookID, b.Name, b.Status, b.Pending, b.OldestMatchedAt.Format(time.RFC3339))
	}
	tw.Flush()
	fmt.Fprintf(w, "total %d pending to %d webhooks, read at %s\n", rep.TotalPending, rep.Webhooks, rep.ReadAt.Format(time.RFC3339))
}
