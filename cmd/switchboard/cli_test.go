package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/registry/store"
)

func TestNewLogger_RefusesUnknownSettings(t *testing.T) {
	if _, err := newLogger(io.Discard, "info", "xml"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("format xml: err %v, want one naming --log-format", err)
	}
	if _, err := newLogger(io.Discard, "loud", "auto"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("level loud: err %v, want one naming --log-level", err)
	}
}

func TestRun_Version(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("switchboard %s\ncommit: %s\ngo: %s %s/%s\nregistry schema: %d\n",
		version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH, store.SchemaVersion())
	if got := out.String(); got != want || version == "" || store.SchemaVersion() < 7 {
		t.Errorf("version printed %q, want %q", got, want)
	}
}

// Every flag of every subcommand shows its environment variable in --help.
func TestRun_EveryHelpNamesEachFlagsVariable(t *testing.T) {
	for _, sub := range subcommands(t) {
		var helpOut bytes.Buffer
		if err := run(context.Background(), []string{sub, "--help"}, &helpOut, io.Discard); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s --help: %v", sub, err)
		}
		_, flags, _ := strings.Cut(helpOut.String(), "\nFLAGS")
		for line := range strings.Lines(flags) {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasPrefix(f[0], "--") {
				continue
			}
			want := "[" + envNames("switchboard "+sub, strings.TrimPrefix(f[0], "--"))[0] + "]"
			if !strings.HasSuffix(strings.TrimSpace(line), want) {
				t.Errorf("%s --help: %q does not end with %s", sub, strings.TrimSpace(line), want)
			}
		}
	}
}
