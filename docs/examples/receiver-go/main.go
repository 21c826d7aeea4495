// Command receiver-go receives Switchboard's webhooks: it verifies each
// request's signature with the Standard Webhooks library and handles each
// event once, keyed by webhook-id. docs/receivers.md shows this file; a
// test in cmd/switchboard runs it against a real delivery.
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func main() {
	wh, err := standardwebhooks.NewWebhook(os.Getenv("WEBHOOK_SECRET")) // whsec_...
	if err != nil {
		log.Fatal(err)
	}
	// Handled event ids. Keep them where your writes go (a table with a
	// unique key on the id, written in the same transaction as the effect)
	// for at least as long as Switchboard retries: days, not minutes.
	var mu sync.Mutex
	handled := map[string]bool{}

	http.HandleFunc("POST /webhooks", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		// Verify checks the HMAC over "id.timestamp.body" against every
		// signature in webhook-signature, and that the timestamp is within
		// five minutes of now.
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("webhook-id") // the event id, the same on every retry
		mu.Lock()
		seen := handled[id]
		handled[id] = true
		mu.Unlock()
		if seen {
			fmt.Println("duplicate", id)
			w.WriteHeader(http.StatusNoContent) // a 2xx, or Switchboard retries
			return
		}
		fmt.Println("handled", id, string(body))
		w.WriteHeader(http.StatusNoContent)
	})
	addr := os.Getenv("LISTEN") // e.g. 127.0.0.1:9000
	fmt.Println("listening on", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
