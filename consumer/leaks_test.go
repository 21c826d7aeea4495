package consumer_test

import (
	"net"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// What a tenant reads of a failed delivery (the attempt record, the dead
// letter's last error) names the host its URL gave, never the addresses
// the name resolved to; the operator's log has them.
func TestDeliverer_TenantErrorsHideResolvedAddresses(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close() // nothing listens: connection refused, after resolution
	refused := webhook(t, "wh_name_refused", "http://localhost:"+port+"/h", "call.started")
	refused.MaxRetries = 0
	s.putWebhook(refused)
	s.startIndex()
	s.publishDelivery(event("msg_leak", "call.started", ""), "wh_name_refused")
	d := s.deliverer()
	d.Guard = nil // the default: localhost is refused
	goRun(t, "deliverer", d.Run)

	testenv.WaitFor(t, 10*time.Second, "record and dead letter", func() bool {
		return len(s.attempts()) == 1 && len(s.deadLetters()) == 1
	})
	a := s.attempts()[0]
	last := s.deadLetters()[0].Header.Get(streams.HeaderLastError)
	for what, text := range map[string]string{"attempt error": a.Error, "dead letter": last} {
		if !strings.Contains(text, "localhost is a loopback address") {
			t.Errorf("%s %q does not say localhost was refused", what, text)
		}
		for _, addr := range []string{"127.0.0.1", "::1"} {
			if strings.Contains(text, addr) {
				t.Errorf("%s %q shows %s, which the URL did not", what, text, addr)
			}
		}
	}
	if a.Outcome != switchboard.AttemptDeadLettered {
		t.Errorf("attempt %+v, want dead_lettered", a)
	}
	if logs := s.logs.String(); !strings.Contains(logs, "localhost (127.0.0.1)") && !strings.Contains(logs, "localhost (::1)") {
		t.Errorf("the operator's log does not name the address:\n%s", logs)
	}
}
