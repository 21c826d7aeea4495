package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/switchboard-hq/switchboard/registry/store"
)

func keyCommand(stdout, stderr io.Writer) *ffcli.Command {
	return groupCommand("key", "administer API keys",
		keyCreateCommand(stdout, stderr),
		keyListCommand(stdout, stderr),
		keyRevokeCommand(stdout, stderr))
}

func keyCreateCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultAdminConfig()
	var tenant, name, scope string
	var admin bool
	var expiresIn time.Duration
	fs := flag.NewFlagSet("key create", flag.ContinueOnError)
	fs.StringVar(&tenant, "tenant", tenant, "name (or id) of the tenant the key acts for (required)")
	fs.StringVar(&name, "name", name, "name of the key, unique within the tenant; recorded as created_by and updated_by of what it changes (required)")
	fs.BoolVar(&admin, "admin", admin, "the key may also administer tenants and their keys (/v1/tenants...): --scope admin")
	fs.StringVar(&scope, "scope", scope, "admin, manage (everything of the tenant; the default) or publish (POST /v1/events only)")
	fs.DurationVar(&expiresIn, "expires-in", expiresIn, "the key stops working this long from now, e.g. 720h; 0 never")
	cfg.register(fs)
	return &ffcli.Command{
		Name:       "create",
		ShortUsage: "switchboard key create --tenant NAME --name KEYNAME [--admin | --scope SCOPE] [--expires-in D] [flags]",
		ShortHelp:  "create an API key and print it",
		LongHelp: `Creates an API key for the tenant called --tenant in the registry under
--data-dir and prints the key alone on stdout (logs go to stderr). The key is
stored hashed: this is the only time it is shown.

--scope says what the key may do: manage (the default) everything of its
tenant, its keys included; publish only POST /v1/events, for an upstream
service that must not read webhooks or their secrets; admin also the
routes that administer every tenant (--admin is the same).

It works while 'switchboard serve' runs on the same --data-dir; the key is
usable at once.

  key=$(switchboard key create --tenant acme --name ci --data-dir /srv/switchboard)`,
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			if err := noArgs("key create", args); err != nil {
				return usageErrorf("%v", err)
			}
			var errs []error
			if tenant == "" {
				errs = append(errs, errors.New("--tenant is required"))
			}
			if name == "" {
				errs = append(errs, errors.New("--name is required"))
			}
			opts := []store.KeyOption{store.AdminKey(admin)}
			switch {
			case scope != "" && admin && scope != string(store.ScopeAdmin):
				errs = append(errs, errors.New("--admin contradicts --scope "+scope))
			case scope != "":
				opts = append(opts, store.KeyScope(store.Scope(scope)))
			}
			if expiresIn < 0 {
				errs = append(errs, errors.New("--expires-in must not be negative"))
			} else if expiresIn > 0 {
				opts = append(opts, store.KeyExpiresAt(time.Now().Add(expiresIn)))
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			logger, db, t, err := cfg.openTenant(ctx, stderr, "key create", tenant)
			if err != nil {
				return err
			}
			defer db.Close()
			plaintext, k, err := db.CreateKey(ctx, t.ID, name, opts...)
			if err != nil {
				return clientError("key create", err)
			}
			logger.Info("api key created", "tenant", t.ID, "key_id", k.ID, "name", k.Name, "admin", k.Admin, "scope", k.Scope)
			fmt.Fprintln(stdout, plaintext)
			return nil
		},
	}
}

func keyListCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultAdminConfig()
	var tenant string
	fs := flag.NewFlagSet("key list", flag.ContinueOnError)
	fs.StringVar(&tenant, "tenant", tenant, "name (or id) of the tenant whose keys to list (required)")
	cfg.register(fs)
	return &ffcli.Command{
		Name:       "list",
		ShortUsage: "switchboard key list --tenant NAME [flags]",
		ShortHelp:  "list a tenant's API keys",
		LongHelp: `Prints the API keys of the tenant called --tenant, one a line under a
header: id, name, scope, creation time, expiry and last use ("-" for never).
Last use is at most a minute stale. Keys are stored hashed: their values
cannot be shown.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			if err := noArgs("key list", args); err != nil {
				return usageErrorf("%v", err)
			}
			if tenant == "" {
				return errors.New("--tenant is required")
			}
			_, db, t, err := cfg.openTenant(ctx, stderr, "key list", tenant)
			if err != nil {
				return err
			}
			defer db.Close()
			tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tCREATED\tEXPIRES\tLAST USED")
			f := store.PageFilter{Limit: store.MaxPageSize}
			for {
				keys, more, err := db.FindKeys(ctx, t.ID, f)
				if err != nil {
					return clientError("key list", err)
				}
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Scope,
						k.CreatedAt.UTC().Format(time.RFC3339), timeOrDash(k.ExpiresAt), timeOrDash(k.LastUsedAt))
				}
				if !more {
					return tw.Flush()
				}
				f.After = keys[len(keys)-1].ID
			}
		},
	}
}

func keyRevokeCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultAdminConfig()
	var tenant string
	fs := flag.NewFlagSet("key revoke", flag.ContinueOnError)
	fs.StringVar(&tenant, "tenant", tenant, "name (or id) of the tenant the key belongs to (required)")
	cfg.register(fs)
	return &ffcli.Command{
		Name:       "revoke",
		ShortUsage: "switchboard key revoke --tenant NAME KEY_ID|KEYNAME [flags]",
		ShortHelp:  "revoke an API key",
		LongHelp: `Deletes the tenant's API key whose id (or name) is given and prints its id.
It stops authenticating at once, also on a 'switchboard serve' running on
the same --data-dir. To rotate a key: create its successor, move the
clients, then revoke the old one.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			args, err := oneArg(fs, "key revoke", "KEY_ID|KEYNAME", args, stderr)
			if err != nil {
				return err
			}
			if tenant == "" {
				return errors.New("--tenant is required")
			}
			logger, db, t, err := cfg.openTenant(ctx, stderr, "key revoke", tenant)
			if err != nil {
				return err
			}
			defer db.Close()
			k, err := db.FindKey(ctx, t.ID, args[0])
			if err != nil {
				return clientError("key revoke", err)
			}
			if _, err := db.RevokeKey(ctx, t.ID, k.ID); err != nil {
				return clientError("key revoke", err)
			}
			logger.Info("api key revoked", "tenant", t.ID, "key_id", k.ID, "name", k.Name)
			fmt.Fprintln(stdout, k.ID)
			return nil
		},
	}
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
