package api_test

import (
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// replayIDsBody is a replay request naming n ids: as many distinct ones as
// fit in the 1 MiB body limit with n of them (dl_1 to dl_9999), repeated.
func replayIDsBody(n int) string {
	var b strings.Builder
	b.WriteString(`{"ids":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"dl_` + strconv.Itoa(i%9999+1) + `"`)
	}
	b.WriteString(`]}`)
	return b.String()
}

// A replay naming 100,000 ids is refused as a whole, with one reason, and
// no error per id (the answer stays small whatever the request holds).
func TestDeadLetters_ReplayTooManyIDs(t *testing.T) {
	a := startDeadLetterAPI(t)
	body := replayIDsBody(100_000)
	if len(body) > 1<<20 {
		t.Fatalf("the body is %d bytes, over the limit", len(body))
	}
	_, b := replay(t, a, a.Key, body, http.StatusUnprocessableEntity)
	got := apitest.Decode[apitest.ErrorJSON](t, b)
	if want := []string{"must hold at most 1000 dead letter ids"}; strings.Join(got.Errors["ids"], "|") != want[0] {
		t.Errorf("ids: %q, want %q", got.Errors["ids"], want)
	}
	if len(b) > 1024 {
		t.Errorf("the answer is %d bytes: %s", len(b), b)
	}
}

// BenchmarkReplayTooManyIDs is the refusal of a replay naming 100,000 ids,
// end to end over loopback HTTP (the JSON decoding of the 1 MiB body
// included).
func BenchmarkReplayTooManyIDs(b *testing.B) {
	a := startDeadLetterAPI(b)
	body := replayIDsBody(100_000)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if status, resp := a.Do(b, http.MethodPost, "/v1/dead-letters/replay", a.Key, body); status != http.StatusUnprocessableEntity {
			b.Fatalf("%d %s", status, resp)
		}
	}
}

// A test send's error names the host the URL gave, never the addresses it
// resolved to, refused by the guard or not; the operator's log has them.
func TestTestSend_ErrorsHideResolvedAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close() // nothing listens there
	for name, tc := range map[string]struct {
		guard *netguard.Guard
		want  string
	}{
		"refused by the guard": {nil, "refused: localhost is a loopback address"},
		"connection refused":   {netguard.New(true), "connect: connection refused"},
	} {
		t.Run(name, func(t *testing.T) {
			logs := &syncBuffer{}
			a := apitest.Start(t, func(s *api.Server) {
				s.Guard = tc.guard
				s.Logger = slog.New(slog.NewTextHandler(logs, nil))
			})
			wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
				"name": "by name", "url": "http://localhost:" + port + "/h?token=s3cret", "events": []string{"*"},
			}))
			res := testSend(t, a, a.Key, wh.ID)
			if res.Success || !strings.Contains(res.Error, tc.want) {
				t.Errorf("answer %+v, want the error to say %q", res, tc.want)
			}
			for _, leak := range []string{"127.0.0.1", "::1", "s3cret"} {
				if strings.Contains(res.Error, leak) {
					t.Errorf("error %q shows %s", res.Error, leak)
				}
			}
			if !strings.Contains(logs.String(), "127.0.0.1") && !strings.Contains(logs.String(), "::1") {
				t.Errorf("the operator's log does not name the address: %s", logs)
			}
		})
	}
}
