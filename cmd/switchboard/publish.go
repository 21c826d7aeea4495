package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/store"
)

type publishConfig struct {
	APIURL     string
	APIKey     string
	NATSURL    string
	NATS       natsAuth
	Tenant     string
	ID         string
	Type       string
	AgentID    string
	OccurredAt string
	Data       string
	Timeout    time.Duration
	DataDir    string // where --tenant names are looked up
}

func publishCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := publishConfig{APIURL: "http://127.0.0.1:8080", Data: "{}", Timeout: 10 * time.Second, DataDir: defaultServeConfig().DataDir}
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.StringVar(&cfg.APIURL, "api-url", cfg.APIURL, "Switchboard API to publish through")
	fs.StringVar(&cfg.APIKey, "api-key", cfg.APIKey, "API key (Bearer) for --api-url")
	registerNATSFlags(fs, &cfg.NATSURL)
	registerNATSAuthFlags(fs, &cfg.NATS, false)
	fs.StringVar(&cfg.Tenant, "tenant", cfg.Tenant, "tenant name or id, with --nats-url (the API takes it from the key); a name is looked up in --data-dir's registry")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "the --data-dir of 'switchboard serve' or 'registry', to look --tenant up in")
	fs.StringVar(&cfg.ID, "id", cfg.ID, "event id, the idempotency key (generated when empty)")
	fs.StringVar(&cfg.Type, "type", cfg.Type, "event type, e.g. call.started (required)")
	fs.StringVar(&cfg.AgentID, "agent-id", cfg.AgentID, "agent the event is about")
	fs.StringVar(&cfg.OccurredAt, "occurred-at", cfg.OccurredAt, "when it happened, RFC 3339 (default now)")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "event data: a JSON object, @file to read a file, or - for stdin")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "how long to wait for the event to be stored")
	return &ffcli.Command{
		Name:       "publish",
		ShortUsage: "switchboard publish --type TYPE [--data JSON] [flags]",
		ShortHelp:  "publish one event and print its id",
		LongHelp: `Publishes one event through the HTTP API (POST /v1/events), or straight to
JetStream with --nats-url and --tenant. --tenant takes a name or an id: it
is looked up in the registry under --data-dir when there is one there, and
refused when it names no tenant; without a registry at hand, only an id
(ten_...) is taken, as it is. Prints the event id alone on stdout
once the event is stored; an id published before is reported on stderr and
not delivered twice.

  switchboard publish --api-key sk_... --type call.started --agent-id a1 \
      --data '{"call_id": "c-42"}'`,
		FlagSet: fs,
		Exec: func(ctx context.Context, _ []string) error {
			ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
			return cfg.run(ctx, stdout, stderr)
		},
	}
}

func (c publishConfig) run(ctx context.Context, stdout, stderr io.Writer) error {
	if c.Type == "" {
		return errors.New("--type is required")
	}
	data, err := readData(c.Data)
	if err != nil {
		return err
	}
	evt := switchboard.Event{ID: c.ID, Type: c.Type, AgentID: c.AgentID, Data: data}
	if c.OccurredAt != "" {
		if evt.OccurredAt, err = time.Parse(time.RFC3339, c.OccurredAt); err != nil {
			return fmt.Errorf("--occurred-at: %w", err)
		}
	}
	var id string
	var dup bool
	if c.NATSURL != "" {
		id, dup, err = c.publishNATS(ctx, &evt)
	} else {
		id, dup, err = c.publishAPI(ctx, &evt)
	}
	if err != nil {
		return err
	}
	if dup {
		fmt.Fprintf(stderr, "event %s was published before; it is not delivered twice\n", id)
	}
	fmt.Fprintln(stdout, id)
	return nil
}

func (c publishConfig) publishNATS(ctx context.Context, evt *switchboard.Event) (string, bool, error) {
	if c.Tenant == "" {
		return "", false, errors.New("--tenant is required with --nats-url")
	}
	tenant, err := c.resolveTenant(ctx)
	if err != nil {
		return "", false, err
	}
	evt.TenantID = tenant
	if err := errors.Join(c.NATS.validate(true)...); err != nil {
		return "", false, err
	}
	// The tenant's own inbox prefix: deploy/nats lets a producer user
	// subscribe to its tenant's replies only, never to other clients'.
	nc, err := connectNATS(c.NATSURL, c.NATS, nats.Name("switchboard publish"), nats.CustomInboxPrefix(producerInboxPrefix(tenant)))
	if err != nil {
		return "", false, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", false, fmt.Errorf("jetstream: %w", err)
	}
	res, err := producer.New(js).Publish(ctx, evt)
	if err != nil {
		return "", false, err
	}
	return res.ID, res.Duplicate, nil
}

// resolveTenant returns the id of the tenant --tenant names: looked up by
// name or id in the registry under --data-dir when there is one, so that an
// event is never published for a tenant that does not exist (it would be
// stored and delivered to no one); else --tenant when it has the form of a
// tenant id.
func (c publishConfig) resolveTenant(ctx context.Context) (string, error) {
	path := filepath.Join(c.DataDir, "registry.db")
	if _, err := os.Stat(path); err == nil {
		db, err := store.Open(path)
		if err != nil {
			return "", err
		}
		defer db.Close()
		t, err := db.FindTenant(ctx, c.Tenant)
		if err != nil {
			return "", clientError("--tenant", err)
		}
		return t.ID, nil
	}
	if !strings.HasPrefix(c.Tenant, "ten_") {
		return "", fmt.Errorf("--tenant %q is not a tenant id (ten_...), and there is no registry under --data-dir %s to look the name up in: "+
			"give the id ('switchboard tenant list') or the right --data-dir", c.Tenant, c.DataDir)
	}
	return c.Tenant, nil
}

func (c publishConfig) publishAPI(ctx context.Context, evt *switchboard.Event) (string, bool, error) {
	if c.Tenant != "" {
		return "", false, errors.New("--tenant applies with --nats-url only: through the API, the event is the API key's tenant's")
	}
	if c.APIKey == "" {
		return "", false, errors.New("--api-key (or SWITCHBOARD_API_KEY) is required to publish through the API")
	}
	body := map[string]any{"type": evt.Type, "data": evt.Data}
	if evt.ID != "" {
		body["id"] = evt.ID
	}
	if evt.AgentID != "" {
		body["agent_id"] = evt.AgentID
	}
	if !evt.OccurredAt.IsZero() {
		body["occurred_at"] = evt.OccurredAt
	}
	api := apiClient{url: strings.TrimRight(c.APIURL, "/"), key: c.APIKey}
	var out producer.EventResponse
	if err := api.do(ctx, http.MethodPost, "/v1/events", body, &out); err != nil {
		return "", false, fmt.Errorf("publish: %w", err)
	}
	return out.ID, out.Duplicate, nil
}

// readData resolves --data: inline JSON, @file, or - for stdin.
func readData(arg string) (json.RawMessage, error) {
	var b []byte
	var err error
	switch {
	case arg == "-":
		b, err = io.ReadAll(os.Stdin)
	case strings.HasPrefix(arg, "@"):
		b, err = os.ReadFile(arg[1:])
	default:
		b = []byte(arg)
	}
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	if !json.Valid(b) {
		return nil, errors.New("--data: not valid JSON")
	}
	return json.RawMessage(bytes.TrimSpace(b)), nil
}

// producerInboxPrefix is the inbox prefix of a producer of tenant, the one
// that deploy/nats/auth.conf lets a producer user subscribe to.
func producerInboxPrefix(tenant string) string { return "_INBOX_" + tenant }
