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

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry"
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
// registry.Open).
//
// It also returns the command's logger, as the flags set it.
func (c adminConfig) open(stderr io.Writer) (*slog.Logger, *registry.DB, error) {
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
	db, err := registry.Open(path)
	return logger, db, err
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
	return groupCommand("tenant", "administer tenants", tenantCreateCommand(stdout, stderr))
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
		Exec: func(context.Context, []string) error {
			return flag.ErrHelp
		},
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
				fmt.Fprintln(stderr, "switchboard: tenant create takes one NAME")
				return flag.ErrHelp
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
