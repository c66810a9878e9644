package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/keytrail/keytrail/internal/testkit"
)

// browser is a headless Chromium (Debian's chromium, installed by `make
// browser`, which `make test` runs first) driven by chromedp.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	// shots is where screenshots of every page go (test artifacts).
	shots string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path := os.Getenv("KEYTRAIL_CHROMIUM")
	if path == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		t.Fatal("no Chromium: run `make browser` (it installs Debian's chromium), or set KEYTRAIL_CHROMIUM")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless,
		chromedp.WindowSize(1280, 1000), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTime(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	shots := filepath.Join("artifacts", "console")
	os.MkdirAll(shots, 0o755)
	return &browser{t: t, ctx: ctx, base: base, shots: shots}
}

// run runs chromedp actions, failing the test on an error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// submit runs actions that end in a navigation (a form's submit, a link's
// click) and waits for the new page.
func (b *browser) submit(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if _, err := chromedp.RunResponse(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	b.run(what, chromedp.WaitVisible(css("h1")))
}

// get runs one action that returns a value.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// css is a CSS selector.
func css(s string) chromedp.CSS { return chromedp.CSS(s) }

// open loads a console page and waits for its heading.
func (b *browser) open(path string) {
	b.t.Helper()
	b.run("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(css("h1")))
}

// openUntil loads a page until its text holds want (the console's lists
// are the read model's, which follows a write by a moment).
func (b *browser) openUntil(path, want string) {
	b.t.Helper()
	testkit.Eventually(b.t, 10*time.Second, func() error {
		b.open(path)
		if !strings.Contains(b.body(), want) {
			return fmt.Errorf("%s does not show %q yet", path, want)
		}
		return nil
	})
}

// text is the text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(get(b, "read "+sel, chromedp.Text(css(sel))))
}

// body is the page's whole text.
func (b *browser) body() string { return b.text("body") }

// html is the page's source as the browser has it.
func (b *browser) html() string {
	b.t.Helper()
	return get(b, "read the page", chromedp.OuterHTML(css("html")))
}

// shot saves a screenshot of the whole page as name.png, and checks the
// page's basic accessibility: a language, one h1, a label for every
// control, no image without a text.
func (b *browser) shot(name string) {
	b.t.Helper()
	png := get(b, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	problems := get(b, "check "+name, chromedp.Evaluate[[]string](`(() => {
		const out = [];
		if (!document.documentElement.lang) out.push("no lang");
		if (document.querySelectorAll("h1").length !== 1) out.push(document.querySelectorAll("h1").length + " h1");
		for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
			if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label")) out.push("unlabelled " + (el.name || el.id));
		}
		for (const svg of document.querySelectorAll("svg")) {
			if (!svg.querySelector("title")) out.push("an svg without a title");
		}
		return out;
	})()`))
	if len(problems) > 0 {
		b.t.Errorf("%s: accessibility: %v", name, problems)
	}
}

// TestConsoleInABrowser drives the console in a real headless Chromium:
// sign in with the root key; issue a key and see its secret exactly once;
// disable its user (confirming) and see the key's badge change; explain the
// denial at a time and see the causing event with its actor and reason;
// revoke the key with a confirmation; a form without its CSRF token is
// refused; a tenant admin cannot reach another tenant's pages by URL; the
// key typed in is in no URL, cookie or log; a screenshot of every page is
// kept (integration/artifacts/console).
func TestConsoleInABrowser(t *testing.T) {
	e := startAdmin(t)
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "acme", "name": "Acme"}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/users", e.root, map[string]any{"id": "bob", "name": "Bob"}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/acme/orders", "upstreams": []string{"http://127.0.0.1:9"}}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/webhooks", e.root, map[string]any{"url": "http://127.0.0.1:9/hook"}), 201)
	b := newBrowser(t, e.base)

	// Sign in.
	b.open("/console/login")
	b.shot("login")
	b.run("type the key", chromedp.SendKeys(css("#key"), e.root))
	b.submit("sign in", chromedp.Submit(css("#key")))
	if !strings.Contains(b.body(), "acme") {
		t.Fatalf("after sign-in: %s", b.body())
	}
	b.shot("tenants")

	// Issue a key: its secret, once.
	b.open("/console/tenants/acme/keys")
	b.run("issue", chromedp.SendKeys(css("#new-user"), "bob"), chromedp.SendKeys(css("#new-name"), "billing-sync"),
		chromedp.SendKeys(css("#new-ttl"), "90d"))
	b.submit("issue", chromedp.Submit(css("#new-user")))
	secret, location := get(b, "read the secret", chromedp.Value(css("#secret"))), get(b, "where", chromedp.Location())
	b.shot("secret")
	// The same form sent again (reload) issues no second key.
	b.submit("resubmit", chromedp.Reload())
	if body := b.body(); !strings.Contains(body, "already issued a key") || strings.Contains(body, secret) {
		t.Fatalf("the issue form sent again: %s", body)
	}
	b.openUntil("/console/tenants/acme/keys", "billing-sync")
	if !strings.HasPrefix(secret, "kt_") || strings.Contains(location, secret) {
		t.Fatalf("secret %q at %s", secret, location)
	}
	b.submit("go to the key", chromedp.Click(css("table a[href*='/keys/key_']")))
	keyURL := get(b, "where", chromedp.Location())
	keyID := keyURL[strings.LastIndex(keyURL, "/")+1:]
	keyID, _, _ = strings.Cut(keyID, "?")
	if strings.Contains(b.html(), secret) || b.text("#key-status") != "active" {
		t.Fatalf("the key page shows the secret, or the key is not active: %s", b.text("#key-status"))
	}
	b.shot("key")
	b.openUntil("/console/tenants/acme/keys", "billing-sync")
	if strings.Contains(b.html(), secret) || !strings.Contains(b.body(), "billing-sync") {
		t.Fatal("the key list shows the secret, or not the key")
	}
	b.shot("keys")
	// "Which key is this?": the secret pasted in finds its key, and is in
	// no URL.
	b.run("paste the secret", chromedp.SendKeys(css("#find-secret"), secret))
	b.submit("find", chromedp.Submit(css("#find-secret")))
	if where := get(b, "where", chromedp.Location()); !strings.HasSuffix(where, "/keys/"+keyID) || !strings.Contains(b.text("h1"), keyID) {
		t.Fatalf("finding the key by its secret led to %s", where)
	}

	// Disable its user, confirming, with a reason.
	b.open("/console/tenants/acme/users")
	b.shot("users")
	b.run("disable bob", chromedp.SendKeys(css("#reason-bob"), "invoice 2291 unpaid"))
	b.submit("disable bob", chromedp.Submit(css("#reason-bob")))
	if !strings.Contains(b.body(), "disable user bob") {
		t.Fatalf("no confirmation: %s", b.body())
	}
	// The confirmation shows what it would do before it is done: the key
	// that would stop working, and how.
	if pv := b.text("#preview-keys"); !strings.Contains(pv, keyID) || !strings.Contains(pv, "VALID") || !strings.Contains(pv, "USER_DISABLED") {
		t.Fatalf("the preview of disabling bob: %q", pv)
	}
	if ev := b.text("#preview-events"); !strings.Contains(ev, "user.disabled") {
		t.Fatalf("the preview's events: %q", ev)
	}
	b.shot("confirm")
	b.submit("confirm", chromedp.Click(css("button.danger")))
	if bob := b.text("#user-bob"); !strings.Contains(bob, "disabled") || !strings.Contains(bob, "0 active of 1") {
		t.Fatalf("bob: %s", bob)
	}
	b.open("/console/tenants/acme/keys")
	if got := b.text(fmt.Sprintf("[data-key-status=%q]", keyID)); got != "user_disabled" {
		t.Fatalf("the key's badge: %q", got)
	}

	// Why is it denied? The causing event, who and why.
	b.open("/console/tenants/acme/keys/" + keyID)
	if owner := b.text("#owner-state"); !strings.Contains(owner, "disabled — user.disabled") || !strings.Contains(owner, "by root: “invoice 2291 unpaid”") {
		t.Fatalf("the owner's state: %s", owner)
	}
	at := time.Now().UTC().Add(time.Second).Format(time.RFC3339)
	b.run("explain", chromedp.SendKeys(css("#at"), at))
	b.submit("explain", chromedp.Submit(css("#at")))
	if ex := b.text("#explanation"); !strings.Contains(ex, "USER_DISABLED") || !strings.Contains(ex, "user.disabled") ||
		!strings.Contains(ex, "root") || !strings.Contains(ex, "invoice 2291 unpaid") {
		t.Fatalf("explanation: %s", ex)
	}
	b.shot("explain")

	// A form without its CSRF token is refused, and changes nothing.
	b.run("strip the token", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`document.querySelectorAll("form[action$='/revoke'] input[name=csrf]").forEach(i => i.remove()), true`)(ctx, t)
		return err
	}))
	b.submit("revoke without a token", chromedp.Click(css("#revoke")))
	if !strings.Contains(b.body(), "CSRF") {
		t.Fatalf("a form without its token: %s", b.body())
	}
	b.shot("csrf-refused")
	if k := e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID, e.root, nil), 200); field(k, "key", "status") == "revoked" {
		t.Fatal("a form without its CSRF token revoked the key")
	}

	// Revoke, with a confirmation.
	b.open("/console/tenants/acme/keys/" + keyID)
	b.run("revoke", chromedp.SendKeys(css("#r-revoke"), "leaked in a log"))
	b.submit("revoke", chromedp.Click(css("#revoke")))
	if !strings.Contains(b.body(), "revoke key "+keyID) {
		t.Fatalf("no confirmation: %s", b.body())
	}
	if pv := b.text("#preview-keys"); !strings.Contains(pv, "USER_DISABLED") || !strings.Contains(pv, "REVOKED") {
		t.Fatalf("the preview of the revocation: %q", pv)
	}
	b.submit("confirm", chromedp.Click(css("button.danger")))
	if st := b.text("#key-status"); st != "revoked" {
		t.Fatalf("after revoking: %s", st)
	}

	// The other pages render.
	for _, p := range []string{"", "/apis", "/decisions", "/notices", "/webhooks"} {
		b.open("/console/tenants/acme" + p)
		if strings.Contains(b.text("h1"), "Not Found") || strings.Contains(b.text("h1"), "Error") {
			t.Fatalf("%s: %s", p, b.body())
		}
		b.shot("page" + strings.ReplaceAll(p, "/", "-"))
	}
	b.submit("to the endpoint", chromedp.Click(css("a[href*='/webhooks/whk_']")))
	b.shot("webhook")

	// The key typed in is in no cookie.
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if strings.Contains(c.Value, e.root[3:20]) || (c.Name == "keytrail_session" && (!c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict)) {
			t.Fatalf("cookie %s: %+v", c.Name, c)
		}
	}

	// Sign out; then a tenant admin of beta cannot reach acme by URL.
	b.submit("sign out", chromedp.Submit(css("form.signout")))
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "beta", "name": "Beta"}), 201)
	e.must(e.call("POST", "/v1/tenants/beta/users", e.root, map[string]any{"id": "eve"}), 201)
	adm := e.must(e.call("POST", "/v1/tenants/beta/keys", e.root, map[string]any{"user": "eve", "scopes": []string{"keytrail:admin"}}), 201)
	e.must(e.call("GET", "/v1/tenants/beta/keys", e.root, nil, "Keytrail-Min-Seq", adm.header.Get("Keytrail-Seq")), 200)
	b.run("sign in as beta", chromedp.SendKeys(css("#key"), field(adm, "secret").(string)))
	b.submit("sign in as beta", chromedp.Submit(css("#key")))
	if !strings.Contains(b.text("h1"), "Beta") {
		t.Fatalf("beta's admin lands on: %s", b.text("h1"))
	}
	b.shot("overview")
	for _, p := range []string{"/console/tenants/acme", "/console/tenants/acme/keys", "/console/tenants/acme/keys/" + keyID, "/console/tenants"} {
		b.open(p)
		if body := b.body(); strings.Contains(body, keyID) && !strings.Contains(p, "/keys/") || strings.Contains(body, "billing-sync") {
			t.Fatalf("beta's admin sees acme at %s: %s", p, body)
		}
		if p != "/console/tenants" && !strings.Contains(b.text("h1"), "Not Found") {
			t.Fatalf("beta's admin at %s: %s", p, b.body())
		}
	}
	b.shot("not-found")
	if strings.Contains(e.logs.String(), e.root) || strings.Contains(e.logs.String(), secret) {
		t.Fatal("a key is in the log")
	}
}
