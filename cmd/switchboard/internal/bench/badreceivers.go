package bench

import (
	"net/http"
	"time"

	"github.com/switchboard-hq/switchboard"
)

// The bad receivers of --bad-share: one answering 500 at once, one never
// answering within the webhook's timeout (the minimum, 5 s), one resetting
// the connection, one answering 204 after a second.
var badKinds = []string{"500", "timeout", "reset", "slow"}

// badEventTypes are the event types of the bad receivers' webhooks, in the
// order of badKinds.
var badEventTypes = []string{"call.ended", "call.answered", "agent.logged_in", "agent.logged_out"}

const (
	badTimeoutHold = (switchboard.MinTimeoutSeconds + 1) * time.Second
	badSlowAnswer  = time.Second
)

func (r *receiver) serveBad(w http.ResponseWriter, req *http.Request, kind string) {
	n := r.bad[kind]
	if n == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	n.Add(1)
	wait := func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-req.Context().Done(): // the deliverer gave up: the body was read, so this fires
		}
	}
	switch kind {
	case "500":
		w.WriteHeader(http.StatusInternalServerError)
	case "timeout":
		wait(badTimeoutHold)
		w.WriteHeader(http.StatusNoContent)
	case "reset":
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	case "slow":
		wait(badSlowAnswer)
		w.WriteHeader(http.StatusNoContent)
	}
}

// badAttempts returns the attempts each bad receiver saw.
func (r *receiver) badAttempts() map[string]int64 {
	out := map[string]int64{}
	for k, n := range r.bad {
		out[k] = n.Load()
	}
	return out
}
