package natsembed_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard/internal/natsembed"
)

// A listening server needs credentials, refuses a seed file others may
// read, and lets in what its seed file's holder presents.
func TestStart_ListeningRequiresAuth(t *testing.T) {
	if s, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"}); err == nil {
		s.Shutdown()
		t.Fatal("a listening server started without credentials")
	}

	seed := filepath.Join(t.TempDir(), "nats-user.nk")
	s, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", Auth: natsembed.Auth{NKeySeedFile: seed}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if !s.CreatedSeed || s.SeedFile != seed {
		t.Errorf("CreatedSeed %v, SeedFile %q", s.CreatedSeed, s.SeedFile)
	}
	b, err := os.ReadFile(seed)
	if err != nil || !strings.HasPrefix(string(b), "SU") {
		t.Fatalf("seed file %q, %v: want a user seed", b, err)
	}
	// In process: no credentials to give.
	nc, err := s.Connect()
	if err != nil {
		t.Fatalf("in-process connection: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Error("an anonymous client got in")
	}
	opt, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	nc, err = nats.Connect(s.ClientURL(), opt)
	if err != nil {
		t.Fatalf("with the seed: %v", err)
	}
	nc.Close()

	if err := os.Chmod(seed, 0o644); err != nil {
		t.Fatal(err)
	}
	if s2, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", Auth: natsembed.Auth{NKeySeedFile: seed}}); err == nil {
		s2.Shutdown()
		t.Error("started with a seed file others may read")
	} else if !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("error %v does not say what to do", err)
	}
}
