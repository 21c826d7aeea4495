// Command switchboard is the one Switchboard binary: `serve` runs every role
// on an embedded JetStream; `registry` and `worker` run them apart against
// an external NATS; the other subcommands publish, benchmark and
// administer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// envPrefix makes --data-dir readable from SWITCHBOARD_DATA_DIR, and so on
// for every flag of every subcommand.
const envPrefix = "SWITCHBOARD"

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "switchboard:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

// run parses args and runs the chosen subcommand; tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &ffcli.Command{
		Name:       "switchboard",
		ShortUsage: "switchboard <subcommand> [flags]",
		ShortHelp:  "webhook delivery engine",
		LongHelp: `Switchboard delivers every event of an agent platform to every matching
webhook: signed (Standard Webhooks), retried with exponential backoff,
dead-lettered when retries are spent, never silently dropped.

Every flag can also be set by an environment variable: SWITCHBOARD_ and the
flag's name in capitals with '-' as '_' (--data-dir is SWITCHBOARD_DATA_DIR).
Flags win over the environment.

Run 'switchboard <subcommand> --help' for a subcommand's flags.`,
		FlagSet: flag.NewFlagSet("switchboard", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{
			serveCommand(stdout, stderr),
			registryCommand(stdout, stderr),
			workerCommand(stdout, stderr),
			publishCommand(stdout, stderr),
			receiveCommand(stdout, stderr),
			benchCommand(stdout, stderr),
			tenantCommand(stdout, stderr),
			keyCommand(stdout, stderr),
			auditCommand(stdout, stderr),
			versionCommand(stdout),
		},
		UsageFunc: usage,
		Exec: func(context.Context, []string) error {
			return flag.ErrHelp
		},
	}
	root.FlagSet.SetOutput(stderr)
	// Subcommands have subcommands of their own (tenant create).
	var setup func([]*ffcli.Command)
	setup = func(cmds []*ffcli.Command) {
		for _, c := range cmds {
			c.FlagSet.SetOutput(stderr)
			c.UsageFunc = usage
			c.Options = append(c.Options, ff.WithEnvVarPrefix(envPrefix))
			setup(c.Subcommands)
		}
	}
	setup(root.Subcommands)
	if err := root.Parse(args); err != nil {
		return err
	}
	return root.Run(ctx)
}

// usage is ffcli's help with each flag's environment variable beside it.
func usage(c *ffcli.Command) string {
	var b strings.Builder
	fmt.Fprintf(&b, "USAGE\n  %s\n\n", c.ShortUsage)
	if c.LongHelp != "" {
		fmt.Fprintf(&b, "%s\n\n", c.LongHelp)
	} else if c.ShortHelp != "" {
		fmt.Fprintf(&b, "%s\n\n", c.ShortHelp)
	}
	if len(c.Subcommands) > 0 {
		b.WriteString("SUBCOMMANDS\n")
		tw := tabwriter.NewWriter(&b, 0, 2, 2, ' ', 0)
		for _, sc := range c.Subcommands {
			fmt.Fprintf(tw, "  %s\t%s\n", sc.Name, sc.ShortHelp)
		}
		tw.Flush()
		b.WriteString("\n")
	}
	if c.FlagSet != nil && c.Name != "switchboard" {
		n := 0
		c.FlagSet.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			b.WriteString("FLAGS (environment variable in brackets)\n")
			tw := tabwriter.NewWriter(&b, 0, 2, 2, ' ', 0)
			c.FlagSet.VisitAll(func(f *flag.Flag) {
				def := ""
				if f.DefValue != "" {
					def = fmt.Sprintf(" (default %s)", f.DefValue)
				}
				fmt.Fprintf(tw, "  --%s\t%s%s [%s]\n", f.Name, f.Usage, def, envName(f.Name))
			})
			tw.Flush()
		}
	}
	return b.String()
}

func envName(flagName string) string {
	return envPrefix + "_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

func versionCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:       "version",
		ShortUsage: "switchboard version",
		ShortHelp:  "print the version",
		FlagSet:    flag.NewFlagSet("version", flag.ContinueOnError),
		Exec: func(context.Context, []string) error {
			fmt.Fprintln(stdout, version)
			return nil
		},
	}
}
