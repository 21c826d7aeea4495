package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// adminConfig is what `tenant create` and `key create` are told: where the
// registry is, and how to log.
type adminConfig struct {
	DataDir   string
	LogLevel  string
	LogFormat string
}

func defaultAdminConfig() adminConfig {
	d := defaultServeConfig()
	return adminConfig{DataDir: d.DataDir, LogLevel: d.LogLevel, LogFormat: d.LogFormat}
}

// register registers the flags every admin subcommand shares.
func (c *adminConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "the --data-dir of 'switchboard serve': the registry is its registry.db")
	registerLogFlags(fs, &c.LogLevel, &c.LogFormat)
}

// open opens the registry of an existing --data-dir. It refuses to
// create one: a mistyped --data-dir would otherwise get a registry of its
// own, and the tenant or key would be made where no server looks. The file
// may be in use by `serve`: SQLite in WAL mode lets both write (see
// store.Open).
//
// It also returns the command's logger, as the flags set it.
func (c adminConfig) open(stderr io.Writer) (*slog.Logger, *store.DB, error) {
	logger, err := newLogger(stderr, c.LogLevel, c.LogFormat)
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(c.DataDir, "registry.db")
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("no registry at %s: check --data-dir, or run `switchboard serve --data-dir %s` once to create it", path, c.DataDir)
		}
		return nil, nil, fmt.Errorf("open registry: %w", err)
	}
	db, err := store.Open(path)
	return logger, db, err
}

// openTenant opens the registry (see open) and finds in it the tenant
// called, or whose id is, idOrName: what every command on one tenant does
// first. Not finding it is cmd's clientError. The caller closes db.
func (c adminConfig) openTenant(ctx context.Context, stderr io.Writer, cmd, idOrName string) (*slog.Logger, *store.DB, store.Tenant, error) {
	logger, db, err := c.open(stderr)
	if err != nil {
		return nil, nil, store.Tenant{}, err
	}
	t, err := db.FindTenant(ctx, idOrName)
	if err != nil {
		db.Close()
		return nil, nil, store.Tenant{}, clientError(cmd, err)
	}
	return logger, db, t, nil
}

// parseTrailingFlags lets flags follow the positional arguments, as in
// `switchboard tenant create acme --data-dir /srv/sb`: the flag package
// stops at the first argument that is not a flag.
func parseTrailingFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		positional = append(positional, args[0])
		if err := fs.Parse(args[1:]); err != nil {
			return nil, err
		}
		args = fs.Args()
	}
	return positional, nil
}

// clientError returns the message of a client-actionable registry error
// without its code, for a person at a terminal, with the failing fields of
// a validation error; other errors as they are.
func clientError(op string, err error) error {
	var e *switchboard.Error
	if errors.As(err, &e) {
		msg := e.Message
		if e.Code != switchboard.EINVALID {
			return fmt.Errorf("%s: %s", op, msg)
		}
		for _, field := range slices.Sorted(maps.Keys(e.Fields)) {
			for _, r := range e.Fields[field] {
				msg += fmt.Sprintf(" (%s %s)", field, r)
			}
		}
		return fmt.Errorf("%s: %s", op, msg)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func tenantCommand(stdout, stderr io.Writer) *ffcli.Command {
	return groupCommand("tenant", "administer tenants",
		tenantCreateCommand(stdout, stderr),
		tenantListCommand(stdout, stderr),
		tenantShowCommand(stdout, stderr),
		tenantDeleteCommand(stdout, stderr))
}

// groupCommand is a command that only holds subcommands: run alone, it
// prints its help.
func groupCommand(name, help string, subs ...*ffcli.Command) *ffcli.Command {
	return &ffcli.Command{
		Name:        name,
		ShortUsage:  "switchboard " + name + " <subcommand> [flags]",
		ShortHelp:   help,
		FlagSet:     flag.NewFlagSet(name, flag.ContinueOnError),
		Subcommands: subs,
		Exec:        groupExec("switchboard " + name),
	}
}

func tenantCreateCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultAdminConfig()
	fs := flag.NewFlagSet("tenant create", flag.ContinueOnError)
	cfg.register(fs)
	return &ffcli.Command{
		Name:       "create",
		ShortUsage: "switchboard tenant create NAME [flags]",
		ShortHelp:  "create a tenant and print its id",
		LongHelp: `Creates a tenant called NAME in the registry under --data-dir and prints its
id alone on stdout (logs go to stderr). Give it a key with
'switchboard key create --tenant NAME --name KEYNAME'.

It works while 'switchboard serve' runs on the same --data-dir. A NAME that
exists already is an error (exit status 1) whose message gives the existing
tenant's id, as POST /v1/tenants answers 409: a script that must be
idempotent can ignore it.

  id=$(switchboard tenant create acme --data-dir /srv/switchboard)`,
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			args, err := parseTrailingFlags(fs, args)
			if err != nil {
				return err
			}
			if len(args) != 1 {
				return missingArg(stderr, "tenant create", "NAME", fs)
			}
			logger, db, err := cfg.open(stderr)
			if err != nil {
				return err
			}
			defer db.Close()
			t, err := db.CreateTenant(ctx, args[0])
			if err != nil {
				return clientError("tenant create", err)
			}
			logger.Info("tenant created", "tenant", t.ID, "name", t.Name)
			fmt.Fprintln(stdout, t.ID)
			return nil
		},
	}
}

func tenantListCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultAdminConfig()
	fs := flag.NewFlagSet("tenant list", flag.ContinueOnError)
	cfg.register(fs)
	return &ffcli.Command{
		Name:       "list",
		ShortUsage: "switchboard tenant list [flags]",
		ShortHelp:  "list the tenants",
		LongHelp: `Prints the tenants of the registry under --data-dir, one a line: id, name and
creation time, tab-separated under a header line.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			if err := noArgs("tenant list", args); err != nil {
				return err
			}
			_, db, err := cfg.open(stderr)
			if err != nil {
				return err
			}
			defer db.Close()
			tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tCREATED")
			f := store.PageFilter{Limit: store.MaxPageSize}
			for {
				ts, more, err := db.FindTenants(ctx, f)
				if err != nil {
					return err
				}
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, t.CreatedAt.UTC().Format(time.RFC3339))
				}
				if !more {
					return tw.Flush()
				}
				f.After = ts[len(ts)-1].ID
			}
		},
	}
}

func tenantShowCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultAdminConfig()
	fs := flag.NewFlagSet("tenant show", flag.ContinueOnError)
	cfg.register(fs)
	return &ffcli.Command{
		Name:       "show",
		ShortUsage: "switchboard tenant show NAME|ID [flags]",
		ShortHelp:  "show a tenant and how much it holds",
		LongHelp: `Prints the tenant called NAME (or whose id is ID) and how many webhooks,
agents, API keys, event types and attempt-log rows it has, one "field value"
a line.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			args, err := oneArg(fs, "tenant show", "NAME|ID", args, stderr)
			if err != nil {
				return err
			}
			_, db, t, err := cfg.openTenant(ctx, stderr, "tenant show", args[0])
			if err != nil {
				return err
			}
			defer db.Close()
			c, err := db.TenantUsage(ctx, t.ID)
			if err != nil {
				return clientError("tenant show", err)
			}
			tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintf(tw, "id\t%s\nname\t%s\ncreated_at\t%s\n", t.ID, t.Name, t.CreatedAt.UTC().Format(time.RFC3339))
			printCounts(tw, c)
			return tw.Flush()
		},
	}
}

func tenantDeleteCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultAdminConfig()
	var yes bool
	var natsURL string
	var natsAuth natsAuth
	fs := flag.NewFlagSet("tenant delete", flag.ContinueOnError)
	fs.BoolVar(&yes, "yes", yes, "really delete: without it nothing is deleted")
	registerNATSFlags(fs, &natsURL)
	registerNATSAuthFlags(fs, &natsAuth, false)
	cfg.register(fs)
	return &ffcli.Command{
		Name:       "delete",
		ShortUsage: "switchboard tenant delete NAME|ID --yes [--nats-url URL] [flags]",
		ShortHelp:  "delete a tenant and everything it holds",
		LongHelp: `Deletes the tenant called NAME (or whose id is ID) with its webhooks, agents,
API keys, event types and attempt log, and prints how many of each it
deleted. A running 'switchboard serve' or 'registry' on the same --data-dir
removes the webhooks from the workers' KV bucket within a second (the
mirror's outbox), so deliveries to them stop.

Its dead letters are in JetStream: with --nats-url (serve's --nats-listen
address, or the cluster) they are purged too; without, they stay until
SB_DEAD's max age. DELETE /v1/tenants/{id} purges them as well.

Not reversible, short of a restore: --yes is required.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			args, err := oneArg(fs, "tenant delete", "NAME|ID", args, stderr)
			if err != nil {
				return err
			}
			if !yes {
				return errors.New("tenant delete: add --yes to delete the tenant and everything it holds")
			}
			logger, db, t, err := cfg.openTenant(ctx, stderr, "tenant delete", args[0])
			if err != nil {
				return err
			}
			defer db.Close()
			dead := -1
			if natsURL != "" {
				if dead, err = purgeDeadLetters(ctx, natsURL, natsAuth, t.ID); err != nil {
					return err
				}
			}
			c, _, err := db.DeleteTenant(ctx, t.ID)
			if err != nil {
				return clientError("tenant delete", err)
			}
			logger.Info("tenant deleted", "tenant", t.ID, "name", t.Name, "webhooks", c.Webhooks, "agents", c.Agents,
				"keys", c.Keys, "attempts", c.Attempts, "dead_letters", dead)
			tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
			printCounts(tw, c)
			if dead >= 0 {
				fmt.Fprintf(tw, "dead_letters\t%d\n", dead)
			} else {
				fmt.Fprintln(stderr, "switchboard: dead letters not purged (no --nats-url); they expire with SB_DEAD's max age")
			}
			return tw.Flush()
		},
	}
}

// purgeDeadLetters connects to NATS at url with auth (the registry's user
// of deploy/nats/auth.conf may purge SB_DEAD) and purges the tenant's dead
// letters.
func purgeDeadLetters(ctx context.Context, url string, auth natsAuth, tenantID string) (int, error) {
	if err := errors.Join(auth.validate(true)...); err != nil {
		return 0, err
	}
	nc, err := connectNATS(url, auth, nats.Name("switchboard tenant delete"))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, fmt.Errorf("jetstream: %w", err)
	}
	return control.PurgeTenantDeadLetters(ctx, js, tenantID)
}

func printCounts(w io.Writer, c store.TenantCounts) {
	fmt.Fprintf(w, "webhooks\t%d\nagents\t%d\nkeys\t%d\nevent_types\t%d\nattempts\t%d\n",
		c.Webhooks, c.Agents, c.Keys, c.EventTypes, c.Attempts)
}

// oneArg parses the flags around the one positional argument of cmd,
// called what.
func oneArg(fs *flag.FlagSet, cmd, what string, args []string, stderr io.Writer) ([]string, error) {
	args, err := parseTrailingFlags(fs, args)
	if err != nil {
		return nil, err
	}
	if len(args) != 1 {
		return nil, missingArg(stderr, cmd, what, fs)
	}
	return args, nil
}

// missingArg prints the usage of cmd to stderr and returns the usage error
// that cmd takes one what.
func missingArg(stderr io.Writer, cmd, what string, fs *flag.FlagSet) error {
	fs.SetOutput(stderr)
	fs.Usage()
	return usageErrorf("%s takes one %s", cmd, what)
}

// noArgs refuses positional arguments to cmd.
func noArgs(cmd string, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd, args)
	}
	return nil
}
