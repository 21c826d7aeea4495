package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/switchboard-hq/switchboard/registry"
)

func keyCommand(stdout, stderr io.Writer) *ffcli.Command {
	return groupCommand("key", "administer API keys", keyCreateCommand(stdout, stderr))
}

func keyCreateCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultAdminConfig()
	var tenant, name string
	var admin bool
	fs := flag.NewFlagSet("key create", flag.ContinueOnError)
	fs.StringVar(&tenant, "tenant", tenant, "name of the tenant the key acts for (required)")
	fs.StringVar(&name, "name", name, "name of the key, unique within the tenant; recorded as created_by and updated_by of what it changes (required)")
	fs.BoolVar(&admin, "admin", admin, "the key may also create tenants and keys (POST /v1/tenants...)")
	cfg.register(fs)
	return &ffcli.Command{
		Name:       "create",
		ShortUsage: "switchboard key create --tenant NAME --name KEYNAME [--admin] [flags]",
		ShortHelp:  "create an API key and print it",
		LongHelp: `Creates an API key for the tenant called --tenant in the registry under
--data-dir and prints the key alone on stdout (logs go to stderr). The key is
stored hashed: this is the only time it is shown.

It works while 'switchboard serve' runs on the same --data-dir; the key is
usable at once.

  key=$(switchboard key create --tenant acme --name ci --data-dir /srv/switchboard)`,
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				fmt.Fprintf(stderr, "switchboard: key create takes no arguments, got %q\n", args)
				return flag.ErrHelp
			}
			var errs []error
			if tenant == "" {
				errs = append(errs, errors.New("--tenant is required"))
			}
			if name == "" {
				errs = append(errs, errors.New("--name is required"))
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			logger, db, err := cfg.open(stderr)
			if err != nil {
				return err
			}
			defer db.Close()
			t, err := db.FindTenantByName(ctx, tenant)
			if err != nil {
				return clientError("key create", err)
			}
			plaintext, k, err := db.CreateKey(ctx, t.ID, name, registry.AdminKey(admin))
			if err != nil {
				return clientError("key create", err)
			}
			logger.Info("api key created", "tenant", t.ID, "key_id", k.ID, "name", k.Name, "admin", k.Admin)
			fmt.Fprintln(stdout, plaintext)
			return nil
		},
	}
}
