package registry_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
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
	_, b := a.replay(t, a.Key, body, http.StatusUnprocessableEntity)
	got := decode[errorJSON](t, b)
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
		if status, resp := a.do(b, http.MethodPost, "/v1/dead-letters/replay", a.Key, body); status != http.StatusUnprocessableEntity {
			b.Fatalf("%d %s", status, resp)
		}
	}
}
