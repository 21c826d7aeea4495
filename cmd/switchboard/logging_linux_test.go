package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openTerminal opens a pseudo-terminal and returns its terminal side (what a
// process started from a shell has as stderr) and the side that reads what
// is written to it.
func openTerminal(t *testing.T) (tty, reader *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open terminal side: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty, ptmx
}

// logLine logs one line through a logger made for w and returns it as read
// back from r.
func logLine(t *testing.T, w io.Writer, r io.Reader, format string) string {
	t.Helper()
	logger, err := newLogger(w, "info", format)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("delivery attempt", "webhook_id", "wh_1", "attempt", 2)
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("read the log line: %v", err)
	}
	return strings.TrimSpace(line)
}

func isJSON(line string) bool {
	var v map[string]any
	return json.Unmarshal([]byte(line), &v) == nil && v["msg"] == "delivery attempt" && v["webhook_id"] == "wh_1"
}

func TestNewLogger_TextOnATerminalJSONOtherwise(t *testing.T) {
	tty, reader := openTerminal(t)
	var buf bytes.Buffer
	for _, c := range []struct {
		name     string
		w        io.Writer
		r        io.Reader
		format   string
		wantJSON bool
	}{
		{"auto, terminal", tty, reader, "auto", false},
		{"auto, pipe or file", &buf, &buf, "auto", true},
		{"empty is auto", &buf, &buf, "", true},
		{"json wins on a terminal", tty, reader, "json", true},
		{"text wins on a file", &buf, &buf, "text", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			line := logLine(t, c.w, c.r, c.format)
			if isJSON(line) != c.wantJSON {
				t.Errorf("format %q: got %q, want JSON: %v", c.format, line, c.wantJSON)
			}
			if !c.wantJSON && !strings.Contains(line, `msg="delivery attempt" webhook_id=wh_1 attempt=2`) {
				t.Errorf("format %q: %q is not slog's text form", c.format, line)
			}
		})
	}
}
