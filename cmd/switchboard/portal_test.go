package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	_ "github.com/mattn/go-sqlite3" // to expire a portal link in the registry's file

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// shotsEnv names a folder to write the portal's screenshots to as well as
// the test's temp dir: SWITCHBOARD_PORTAL_SHOTS=docs/portal regenerates
// the committed set (the path is relative to the repository's root).
const shotsEnv = "SWITCHBOARD_PORTAL_SHOTS"

// chromiumPath returns Debian's chromium (make tools installs it). Without
// it the test skips on a developer's machine but fails in CI, where make
// tools has run.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI must run the portal's browser test: run make tools (apt-get install chromium)")
	}
	t.Skip("chromium is not installed: run make tools (apt-get install chromium) to run the portal's browser test")
	return ""
}

// portalBrowser drives one headless chromium; each tab is a context of it.
type portalBrowser struct {
	t     *testing.T
	ctx   context.Context
	shots []string // folders the screenshots go to
}

func startPortalBrowser(t *testing.T) *portalBrowser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // root in CI's container
		chromedp.DisableGPU,
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	b := &portalBrowser{t: t, ctx: ctx, shots: []string{filepath.Join(t.TempDir(), "portal")}}
	if dir := os.Getenv(shotsEnv); dir != "" {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join("..", "..", dir) // the test runs in cmd/switchboard
		}
		b.shots = append(b.shots, dir)
	}
	for _, d := range b.shots {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", strings.Join(b.shots, ", "))
	return b
}

// tab opens a new tab of the browser.
func (b *portalBrowser) tab() context.Context {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	// The tab lives as long as the context of its first run: not one of
	// run's, which time out.
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// run runs steps in tab, failing the test after 20 s or on an error, with
// what the page showed.
func (b *portalBrowser) run(tab context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		c, cancel := context.WithTimeout(tab, 2*time.Second)
		defer cancel()
		hash, _ := chromedp.Run(c, chromedp.Evaluate[string](`location.hash`))
		text, _ := chromedp.Run(c, chromedp.Evaluate[string](`document.querySelector("main")?.innerText ?? ""`))
		b.t.Fatalf("%s: %v\npage %s shows:\n%s", what, err, hash, text)
	}
}

// eval returns the value of a JavaScript expression in tab.
func eval[T any](b *portalBrowser, tab context.Context, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is true.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))(ctx, t)
		return chromedp.Void{}, err
	}
}

// darkMode makes the page prefer a dark colour scheme.
func darkMode() chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		})
		return err
	})
}

// shoot writes screenshots of the whole page at 1280 and 375 px wide, as
// name-1280.png and name-375.png, and leaves the tab at 1280.
func (b *portalBrowser) shoot(tab context.Context, name string) {
	b.t.Helper()
	for _, width := range []int64{1280, 375} {
		var opts []chromedp.EmulateViewportOption
		if width < 600 {
			opts = append(opts, chromedp.EmulateMobile)
		}
		b.run(tab, "resize for "+name, chromedp.EmulateViewport(width, 900, opts...))
		ctx, cancel := context.WithTimeout(tab, 20*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		for _, d := range b.shots {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("%s-%d.png", name, width)), png, 0o644); err != nil {
				b.t.Fatal(err)
			}
		}
	}
	b.run(tab, "resize back", chromedp.EmulateViewport(1280, 900))
}

// TestPortal_InBrowser drives the portal in a real chromium against a
// running `switchboard serve`: sign-in with a key, a webhook created through
// the form (the API's 422 shown beside the URL field first), a test send, the
// attempts of published events, a dead letter replayed from the page to a
// loopback receiver, a portal link scoped to one agent, and revoked and
// expired links.
func TestPortal_InBrowser(t *testing.T) {
	b := startPortalBrowser(t)
	var failing atomic.Bool
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	ctx := context.Background()
	dir := t.TempDir()
	sys := mustStartSystem(t, testServeConfig(dir))
	api := apiClient{url: sys.URL, key: testKey}
	for _, agent := range []string{"acme", "globex"} {
		if err := api.do(ctx, http.MethodPut, "/v1/agents/"+agent, map[string]any{"name": strings.ToUpper(agent[:1]) + agent[1:]}, nil); err != nil {
			t.Fatal(err)
		}
		if err := api.do(ctx, http.MethodPost, "/v1/agents/"+agent+"/webhooks", map[string]any{
			"name": agent + "-crm", "url": recv.URL + "/" + agent, "events": []string{"call.*"},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tab := b.tab()

	// Sign in with the key.
	b.run(tab, "open the portal", chromedp.Navigate(sys.URL+"/portal"), chromedp.WaitVisible(chromedp.CSS("#api-key")))
	b.shoot(tab, "signin")
	b.run(tab, "sign in with a wrong key",
		chromedp.SendKeys(chromedp.CSS("#api-key"), "sk_wrong_0123456789abcdef"), chromedp.Click(chromedp.CSS("#signin-submit")),
		waitJS(`document.querySelector("#signin-error")?.textContent.includes("Invalid API key")`))
	b.run(tab, "sign in",
		chromedp.SetValue(chromedp.CSS("#api-key"), testKey), chromedp.Click(chromedp.CSS("#signin-submit")),
		waitJS(`document.querySelectorAll("#webhook-rows tr[data-webhook]").length === 2`))
	stored := eval[string](b, tab, `sessionStorage.getItem("switchboard.portal.token")`)
	href := eval[string](b, tab, `location.href`)
	if stored != testKey || strings.Contains(href, testKey) {
		t.Fatalf("key in sessionStorage %q, URL %s: want the key stored and not in the URL", stored, href)
	}

	// Create a webhook through the form: a bad URL first.
	b.run(tab, "open the form", chromedp.Click(chromedp.CSS("#new-webhook")), chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), "orders"),
		chromedp.SendKeys(chromedp.CSS("#url"), "not a url"),
		chromedp.Click(chromedp.CSS(`input[name="events"][value="call.started"]`)),
		chromedp.SetValue(chromedp.CSS("#max_retries"), "0"),
		chromedp.Click(chromedp.CSS("#save-webhook")),
		waitJS(`document.querySelector("#err-url")?.textContent.length > 0`))
	urlErr := eval[string](b, tab, `document.querySelector("#err-url").textContent`)
	invalid := eval[string](b, tab, `document.querySelector("#url").getAttribute("aria-invalid")`)
	otherErrs := eval[int](b, tab, `[...document.querySelectorAll(".field-error")].filter(e => e.id !== "err-url" && e.textContent).length`)
	if !strings.Contains(urlErr, "must be") || invalid != "true" || otherErrs != 0 {
		t.Fatalf("URL field error %q, aria-invalid %q, %d other fields in error: want the 422 beside the URL field only", urlErr, invalid, otherErrs)
	}
	b.shoot(tab, "webhook-form-422")
	b.run(tab, "fix the URL and create",
		chromedp.SetValue(chromedp.CSS("#url"), recv.URL+"/orders"), chromedp.Click(chromedp.CSS("#save-webhook")),
		chromedp.WaitVisible(chromedp.CSS("#send-test")))
	hash := eval[string](b, tab, `location.hash`)
	whID := strings.TrimPrefix(hash, "#/webhooks/")
	if !strings.HasPrefix(whID, "wh_") {
		t.Fatalf("after create the page is %s, want the webhook's", hash)
	}
	if err := sys.waitForWebhooks(ctx, []string{whID}); err != nil {
		t.Fatal(err)
	}

	// A test send shows the receiver's answer.
	b.run(tab, "send a test", chromedp.Click(chromedp.CSS("#send-test")),
		waitJS(`document.querySelector("#test-status")?.textContent === "200"`))

	// Revealing the secret asks first. (The page shows a new webhook's
	// secret once: cleared here, so that what shows comes from the reveal.)
	b.run(tab, "reveal the secret", waitJS(`(document.querySelector("#secret-out").replaceChildren(), true)`),
		chromedp.Click(chromedp.CSS("#reveal-secret")),
		waitJS(`document.querySelector("#confirm").open`), chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitJS(`document.querySelector("#secret-value")?.textContent.startsWith("whsec_")`))

	// Published events show in the attempts.
	for range 2 {
		if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "data": map[string]any{"call": 1}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	b.run(tab, "see the attempts", waitJS(`document.querySelectorAll("#attempt-rows tr[data-attempt]").length >= 2`),
		waitJS(`document.querySelector("#success-rate") && true`))
	b.run(tab, "reload for the hour's rate", chromedp.Reload(), waitJS(`document.querySelector("#success-rate")?.textContent === "100%"`))
	b.shoot(tab, "webhook")

	// Edit: the API's 422 beside the timeout, then saved.
	b.run(tab, "edit the webhook", chromedp.Click(chromedp.CSS("#edit-webhook")), chromedp.WaitVisible(chromedp.CSS("#timeout")),
		chromedp.SetValue(chromedp.CSS("#timeout"), "500"), chromedp.Click(chromedp.CSS("#save-webhook")),
		waitJS(`document.querySelector("#err-timeout")?.textContent.length > 0 && document.querySelector("#timeout").getAttribute("aria-invalid") === "true"`),
		chromedp.SetValue(chromedp.CSS("#timeout"), "45"), chromedp.Click(chromedp.CSS("#save-webhook")),
		waitJS(`location.hash === "#/webhooks/`+whID+`" && document.querySelector("main")?.innerText.includes("45 s, 0 retries")`))

	// A dead letter, replayed from the page, arrives.
	failing.Store(true)
	var dead struct {
		ID string `json:"id"`
	}
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "data": map[string]any{"call": 2}}, &dead); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the event is dead-lettered", func() bool {
		var list struct {
			Data []struct {
				EventID string `json:"event_id"`
			} `json:"data"`
		}
		if err := api.do(ctx, http.MethodGet, "/v1/dead-letters?webhook_id="+whID, nil, &list); err != nil {
			t.Fatal(err)
		}
		return len(list.Data) == 1 && list.Data[0].EventID == dead.ID
	})
	b.run(tab, "see the dead letter", chromedp.Navigate(sys.URL+"/portal/#/dead-letters?webhook_id="+whID),
		chromedp.WaitVisible(chromedp.CSS("[data-replay]")))
	b.shoot(tab, "dead-letters")
	failing.Store(false)
	before := len(recv.Requests())
	b.run(tab, "replay it", chromedp.Click(chromedp.CSS("[data-replay]")),
		waitJS(`document.querySelector("#dl-flash")?.textContent.includes("1 dead letter(s) replayed")`))
	testenv.WaitFor(t, 30*time.Second, "the replayed event arrives", func() bool {
		for _, r := range recv.Requests()[before:] {
			if strings.Contains(string(r.Body), dead.ID) && !failing.Load() {
				return true
			}
		}
		return false
	})

	// The event's page shows its delivery, once the attempt log has it.
	testenv.WaitFor(t, 30*time.Second, "the replayed delivery is in the attempt log", func() bool {
		var evt struct {
			Deliveries []struct{ State string } `json:"deliveries"`
		}
		if err := api.do(ctx, http.MethodGet, "/v1/events/"+dead.ID, nil, &evt); err != nil {
			t.Fatal(err)
		}
		return len(evt.Deliveries) == 1 && evt.Deliveries[0].State == "delivered"
	})
	b.run(tab, "open the event", chromedp.Navigate(sys.URL+"/portal/#/events/"+dead.ID),
		waitJS(`document.querySelector("[data-delivery] .badge")?.textContent === "Delivered"`))
	b.shoot(tab, "event")
	b.run(tab, "open the event types", chromedp.Navigate(sys.URL+"/portal/#/event-types"),
		waitJS(`document.querySelectorAll("#event-type-rows tr").length > 0`))
	b.shoot(tab, "event-types")
	b.run(tab, "back to the list", chromedp.Navigate(sys.URL+"/portal/#/webhooks"),
		waitJS(`document.querySelectorAll("#webhook-rows tr[data-webhook]").length === 3`))
	b.shoot(tab, "webhooks")
	b.run(tab, "dark", darkMode())
	b.shoot(tab, "webhooks-dark")

	// A portal link scoped to one agent sees that agent's webhooks only.
	link := func(body map[string]any) (id, url string) {
		var out struct {
			ID  string `json:"id"`
			URL string `json:"url"`
		}
		if err := api.do(ctx, http.MethodPost, "/v1/portal-links", body, &out); err != nil {
			t.Fatal(err)
		}
		return out.ID, out.URL
	}
	acmeID, acmeURL := link(map[string]any{"agent_id": "acme", "expires_in": 3600})
	portal := b.tab()
	b.run(portal, "open acme's link", chromedp.Navigate(acmeURL),
		waitJS(`document.querySelectorAll("#webhook-rows tr[data-webhook]").length > 0 && document.querySelector("#scope")?.textContent.includes("acme")`))
	names := eval[[]string](b, portal, `[...document.querySelectorAll("#webhook-rows .wh-name")].map(a => a.textContent)`)
	href = eval[string](b, portal, `location.href`)
	if len(names) != 1 || names[0] != "acme-crm" {
		t.Fatalf("acme's portal link lists %v, want [acme-crm] only", names)
	}
	if strings.Contains(href, "token=") {
		t.Fatalf("the token stayed in the URL: %s", href)
	}
	b.shoot(portal, "portal-link-agent")

	// The agent's event shows the deliveries to the agent's webhooks only;
	// another agent's event is not found.
	var acmeEvt, globexEvt struct {
		ID string `json:"id"`
	}
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "agent_id": "acme", "data": map[string]any{}}, &acmeEvt); err != nil {
		t.Fatal(err)
	}
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "agent_id": "globex", "data": map[string]any{}}, &globexEvt); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "acme's event is delivered to acme-crm and orders", func() bool {
		var evt struct {
			Deliveries []struct{ State string } `json:"deliveries"`
		}
		if err := api.do(ctx, http.MethodGet, "/v1/events/"+acmeEvt.ID, nil, &evt); err != nil {
			t.Fatal(err)
		}
		return len(evt.Deliveries) == 2 && evt.Deliveries[0].State == "delivered" && evt.Deliveries[1].State == "delivered"
	})
	b.run(portal, "open acme's event", chromedp.Navigate(sys.URL+"/portal/#/events/"+acmeEvt.ID),
		waitJS(`document.querySelectorAll("[data-delivery]").length > 0`))
	if got := eval[[]string](b, portal, `[...document.querySelectorAll("[data-delivery] h2")].map(h => h.textContent)`); len(got) != 1 || got[0] != "acme-crm" {
		t.Fatalf("acme's link shows deliveries to %v, want to acme-crm only", got)
	}
	b.run(portal, "open globex's event", chromedp.Navigate(sys.URL+"/portal/#/events/"+globexEvt.ID),
		waitJS(`document.querySelector("main .notice.bad")?.textContent.includes("Event not found")`))
	token := strings.TrimPrefix(acmeURL[strings.Index(acmeURL, "#"):], "#token=")

	// Revoked: the API answers 401 and the page says why.
	if err := api.do(ctx, http.MethodDelete, "/v1/portal-links/"+acmeID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if status, msg := getWith(t, sys.URL+"/v1/webhooks", token); status != http.StatusUnauthorized || !strings.Contains(msg, "revoked") {
		t.Fatalf("revoked link: %d %s, want 401 saying it was revoked", status, msg)
	}
	b.run(portal, "use the revoked link", chromedp.Navigate(sys.URL+"/portal/#/event-types"),
		waitJS(`document.querySelector("#session-notice")?.textContent.includes("revoked")`))

	// Expired: the same, saying so.
	_, expURL := link(map[string]any{"expires_in": 60, "read_only": true})
	db, err := sql.Open("sqlite3", filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE portal_links SET expires_at = ? WHERE revoked_at IS NULL`, time.Now().Add(-time.Minute).UTC()); err != nil {
		t.Fatal(err)
	}
	expToken := strings.TrimPrefix(expURL[strings.Index(expURL, "#"):], "#token=")
	if status, msg := getWith(t, sys.URL+"/v1/webhooks", expToken); status != http.StatusUnauthorized || !strings.Contains(msg, "expired") {
		t.Fatalf("expired link: %d %s, want 401 saying it expired", status, msg)
	}
	b.run(portal, "open the expired link", chromedp.Navigate(expURL),
		waitJS(`document.querySelector("#session-notice")?.textContent.includes("expired")`))
	b.shoot(portal, "portal-link-expired")
}

// getWith GETs url with the bearer token and returns the status and body.
func getWith(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
