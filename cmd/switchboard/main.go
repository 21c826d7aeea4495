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
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// envPrefix makes --data-dir readable from SWITCHBOARD_DATA_DIR, and so on
// for every flag of every subcommand.
const envPrefix = "SWITCHBOARD"

// version and commit are set at build time with -ldflags "-X
// main.version=... -X main.commit=..." (see Makefile); commit defaults to
// the VCS revision Go records in the binary.
var (
	version = "dev"
	commit  = ""
)

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

// exitCode is 0 for help, 2 for a command line that cannot be run (as the
// flag package and most tools do), 1 for a command that failed.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		return 2
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	return 1
}

// usageError is a command line that cannot be run: an unknown subcommand
// or flag, a missing or extra argument.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
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
flag's name in capitals with '-' as '_' (--data-dir is SWITCHBOARD_DATA_DIR);
where another subcommand has a flag of that name with another meaning, the
variable carries the subcommand's name (SWITCHBOARD_WORKER_LISTEN). Each
subcommand's --help names its variables. Flags win over the environment.

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
			backlogCommand(stdout, stderr),
			versionCommand(stdout),
		},
		Exec: groupExec("switchboard"),
	}
	// The flag package reports a parse error (and prints the usage) through
	// the command's Usage, which ffcli makes call UsageFunc: that is how
	// run learns which command's line was wrong, and prints the usage
	// itself, to stdout when asked for, as a one-line hint on stderr
	// otherwise.
	var last *ffcli.Command
	paths := map[*ffcli.Command]string{}
	// Subcommands have subcommands of their own (tenant create).
	var setup func(path string, c *ffcli.Command)
	setup = func(path string, c *ffcli.Command) {
		paths[c] = path
		c.FlagSet.SetOutput(io.Discard)
		c.UsageFunc = func(c *ffcli.Command) string { last = c; return usage(c, paths[c]) }
		if c != root {
			c.Exec = withEnv(path, c.FlagSet, c.Exec)
		}
		for _, sc := range c.Subcommands {
			setup(path+" "+sc.Name, sc)
		}
	}
	setup("switchboard", root)
	last = root
	err := root.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage(last, paths[last]))
		return err
	case err != nil:
		return usageErrorf("%s%v (see '%s --help')", commandPrefix(paths[last]), unwrapParseError(err), paths[last])
	}
	// A command's Exec that returns flag.ErrHelp (a group run without its
	// subcommand) has ffcli print the usage: to stdout.
	for c := range paths {
		c.FlagSet.SetOutput(stdout)
	}
	return root.Run(ctx)
}

// commandPrefix is "serve: " for "switchboard serve", "" for the root: main
// prefixes every error with "switchboard: " already.
func commandPrefix(path string) string {
	if rest, ok := strings.CutPrefix(path, "switchboard "); ok {
		return rest + ": "
	}
	return ""
}

// unwrapParseError drops ff's "error parsing commandline arguments: "
// prefix: the hint names the command already.
func unwrapParseError(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// groupExec is the Exec of a command that only holds subcommands: alone,
// it prints its help; with an argument, that is an unknown subcommand.
func groupExec(path string) func(context.Context, []string) error {
	return func(_ context.Context, args []string) error {
		if len(args) > 0 {
			return usageErrorf("%sunknown subcommand %q (see '%s --help')", commandPrefix(path), args[0], path)
		}
		return flag.ErrHelp
	}
}

// usage is ffcli's help of the command at path ("switchboard serve") with
// each flag's environment variable beside it.
func usage(c *ffcli.Command, path string) string {
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
				fmt.Fprintf(tw, "  --%s\t%s%s [%s]\n", f.Name, f.Usage, def, envNames(path, f.Name)[0])
			})
			tw.Flush()
		}
	}
	return b.String()
}

func envName(flagName string) string {
	return envPrefix + "_" + envSuffix(flagName)
}

func envSuffix(name string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_", " ", "_").Replace(name))
}

// commandEnv names the flags whose environment variable carries the
// subcommand's name (SWITCHBOARD_WORKER_LISTEN), because another
// subcommand has a flag of that name that means something else: the
// image's SWITCHBOARD_LISTEN is serve's API address, not the worker's
// metrics port nor receive's. Shared settings (NATS, data dir, logging,
// security) keep one name everywhere.
var commandEnv = map[string]struct {
	all   bool     // every flag of the subcommand, else only flags
	flags []string //
	// legacy flags still read SWITCHBOARD_<FLAG> when the subcommand's own
	// variable is unset, for deployments written before (deploy/kubernetes
	// set SWITCHBOARD_LISTEN for workers).
	legacy []string
}{
	"worker":  {flags: []string{"listen"}, legacy: []string{"listen"}},
	"receive": {all: true, legacy: []string{"secret", "status"}},
	"bench":   {all: true},
}

// envNames returns the environment variables of flag name of the
// subcommand at path, the one that wins first.
func envNames(path, name string) []string {
	cmd := strings.TrimPrefix(path, "switchboard ")
	rule, ok := commandEnv[cmd]
	if !ok || !rule.all && !slices.Contains(rule.flags, name) {
		return []string{envName(name)}
	}
	own := envPrefix + "_" + envSuffix(cmd) + "_" + envSuffix(name)
	if slices.Contains(rule.legacy, name) {
		return []string{own, envName(name)}
	}
	return []string{own}
}

// withEnv runs exec after setting each flag of fs that the command line
// left unset from its environment variable (envNames; empty counts as
// unset), so that flags win over the environment. A value the flag refuses
// is a usage error.
func withEnv(path string, fs *flag.FlagSet, exec func(context.Context, []string) error) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		var errs []error
		fs.VisitAll(func(f *flag.Flag) {
			if given[f.Name] {
				return
			}
			for _, env := range envNames(path, f.Name) {
				v := os.Getenv(env)
				if v == "" {
					continue
				}
				if err := fs.Set(f.Name, v); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", env, err))
				}
				return
			}
		})
		if err := errors.Join(errs...); err != nil {
			return usageErrorf("%s%v (see '%s --help')", commandPrefix(path), err, path)
		}
		return exec(ctx, args)
	}
}

func versionCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:       "version",
		ShortUsage: "switchboard version",
		ShortHelp:  "print the version, commit, Go version and registry schema version",
		LongHelp: `Prints, one "field: value" a line after "switchboard VERSION": the commit it
was built from, the Go toolchain, and the registry schema version this binary
migrates registry.db to. A binary refuses a registry of a newer schema; see
"Upgrading" in docs/operations.md for which versions run side by side.`,
		FlagSet: flag.NewFlagSet("version", flag.ContinueOnError),
		Exec: func(_ context.Context, args []string) error {
			if len(args) > 0 {
				return usageErrorf("version takes no arguments")
			}
			fmt.Fprintf(stdout, "switchboard %s\ncommit: %s\ngo: %s %s/%s\nregistry schema: %d\n",
				version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH, store.SchemaVersion())
			return nil
		},
	}
}

// buildCommit is commit, or the VCS revision of the build ("+dirty" when
// the tree was modified), or "unknown".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	if rev == "" {
		return "unknown"
	}
	return rev + dirty
}
