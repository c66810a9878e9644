package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keytrail/keytrail/client"
)

// problemAPI answers every API call with a 404 problem (the console's
// handlers must turn any answer into a page), or what answer says.
type problemAPI struct {
	calls  atomic.Int64
	writes atomic.Int64 // calls that may change something: not reads, not dry runs
	answer func(r *http.Request) (int, string)
}

func (p *problemAPI) RoundTrip(r *http.Request) (*http.Response, error) {
	p.calls.Add(1)
	if r.Method != http.MethodGet && r.URL.Query().Get("dry_run") != "true" {
		p.writes.Add(1)
	}
	status, body := 404, `{"type":"about:blank","title":"Not found","status":404,"detail":"not found","code":"not_found"}`
	if p.answer != nil {
		status, body = p.answer(r)
	}
	ct := "application/json"
	if status >= 400 {
		ct = "application/problem+json"
	}
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {ct}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

// keyAuth signs in the key "good" as the root, and "good-<tenant>" as
// that tenant's admin.
type keyAuth struct{ api *problemAPI }

func (a keyAuth) SignIn(_ context.Context, key string) (Who, http.RoundTripper, error) {
	if key == "good" {
		return Who{Root: true}, a.api, nil
	}
	if t, ok := strings.CutPrefix(key, "good-"); ok {
		return Who{Tenant: t, KeyID: "key_" + t}, a.api, nil
	}
	return Who{}, nil, errors.New("no")
}

type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time { return time.Unix(0, c.t.Load()) }

func newTestConsole(t testing.TB) (*Server, *clock, *problemAPI) {
	c := &clock{}
	c.t.Store(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC).UnixNano())
	api := &problemAPI{}
	s, err := New(Config{Auth: keyAuth{api}, Now: c.now, TTL: 8 * time.Hour, Idle: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, api
}

// signIn signs in with key and returns the cookies the browser holds.
func signIn(t testing.TB, s *Server, key string) ([]*http.Cookie, int) {
	get := httptest.NewRecorder()
	s.ServeHTTP(get, httptest.NewRequest("GET", "/console/login", nil))
	login := get.Result().Cookies()
	form := url.Values{"key": {key}, "csrf": {login[0].Value}}
	req := httptest.NewRequest("POST", "/console/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(login[0])
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec.Result().Cookies(), rec.Code
}

// TestSessions: the session cookie is HttpOnly, SameSite=Strict and holds
// no key; a wrong key is 401 and starts nothing; a POST without the
// session's CSRF token, or from another origin, is refused before the API
// is called; a session ends when idle, at its end, and at sign-out.
func TestSessions(t *testing.T) {
	s, c, api := newTestConsole(t)
	if _, code := signIn(t, s, "bad"); code != http.StatusUnauthorized {
		t.Fatalf("a wrong key: %d", code)
	}
	cookies, code := signIn(t, s, "good")
	var sess *http.Cookie
	for _, ck := range cookies {
		if ck.Name == sessionCookie {
			sess = ck
		}
	}
	if code != http.StatusSeeOther || sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || strings.Contains(sess.Value, "good") {
		t.Fatalf("sign-in: %d %+v", code, sess)
	}
	do := func(method, path, body string, headers ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		req.AddCookie(sess)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	if rec := do("GET", "/console/tenants/acme/keys", ""); rec.Code != http.StatusNotFound || api.calls.Load() == 0 {
		t.Fatalf("a page: %d", rec.Code)
	}
	before := api.calls.Load()
	csrf := s.sessions[sess.Value].csrf
	wrong := "x" + csrf[1:]
	if csrf[0] == 'x' { // a random token starts with x one time in 64
		wrong = "y" + csrf[1:]
	}
	for name, rec := range map[string]*httptest.ResponseRecorder{
		"no token":     do("POST", "/console/tenants/acme/keys/key_x/revoke", "confirm=yes"),
		"wrong token":  do("POST", "/console/tenants/acme/keys/key_x/revoke", "confirm=yes&csrf="+wrong),
		"other origin": do("POST", "/console/tenants/acme/keys/key_x/revoke", "confirm=yes&csrf="+csrf, "Origin", "https://evil.example"),
		"null origin":  do("POST", "/console/tenants/acme/keys/key_x/revoke", "confirm=yes&csrf="+csrf, "Origin", "null"),
	} {
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s: %d", name, rec.Code)
		}
	}
	if api.calls.Load() != before {
		t.Fatal("a refused form reached the API")
	}
	writes := api.writes.Load()
	if rec := do("POST", "/console/tenants/acme/keys/key_x/revoke", "csrf="+csrf); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Yes, do it") ||
		!strings.Contains(rec.Body.String(), "No preview") || api.writes.Load() != writes {
		t.Fatalf("an unconfirmed revoke: %d (only its dry run may reach the API)", rec.Code)
	}
	c.t.Add(int64(31 * time.Minute))
	if rec := do("GET", "/console/tenants/acme/keys", ""); rec.Code != http.StatusSeeOther {
		t.Fatalf("an idle session: %d", rec.Code)
	}
	cookies, _ = signIn(t, s, "good")
	for _, ck := range cookies {
		if ck.Name == sessionCookie {
			sess = ck
		}
	}
	csrf = s.sessions[sess.Value].csrf
	if rec := do("POST", "/console/logout", "csrf="+csrf); rec.Code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", rec.Code)
	}
	if rec := do("GET", "/console/tenants", ""); rec.Code != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", rec.Code)
	}
}

// FuzzConsoleForms: whatever a browser sends — any path, form and query —
// the console answers with a page, never a panic or a 5xx of its own.
func FuzzConsoleForms(f *testing.F) {
	f.Add("POST", "/console/tenants/acme/keys", "user=bob&ttl=90d&scopes=a+b", true)
	f.Add("GET", "/console/tenants/acme/keys/key_x?at=2h", "", true)
	f.Add("POST", "/console/tenants/acme/apis/x/deprecate", "sunset=2027-01-01T00:00", true)
	f.Add("POST", "/console/tenants/%2e%2e/webhooks/w/replay", "since=yesterday", true)
	f.Add("POST", "/console/login", "key=%00", false)
	f.Fuzz(func(t *testing.T, method, path, body string, withToken bool) {
		s, _, _ := newTestConsole(t)
		cookies, _ := signIn(t, s, "good")
		u, err := url.Parse(path)
		if err != nil || !strings.HasPrefix(u.Path, "/console/") || (method != "GET" && method != "POST") {
			return
		}
		var sess *http.Cookie
		for _, ck := range cookies {
			if ck.Name == sessionCookie {
				sess = ck
			}
		}
		if withToken {
			body += "&confirm=yes&csrf=" + s.sessions[sess.Value].csrf
		}
		req, err := http.NewRequest(method, "http://console.test"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(sess)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d", method, path, body, rec.Code)
		}
	})
}

func sessionOf(cookies []*http.Cookie) *http.Cookie {
	for _, ck := range cookies {
		if ck.Name == sessionCookie {
			return ck
		}
	}
	return nil
}

// TestSessionsAreBoundedPerKey: one admin signing in again and again ends
// its own oldest sessions, never another's (found in review: every session
// of the node could be pushed out).
func TestSessionsAreBoundedPerKey(t *testing.T) {
	s, _, _ := newTestConsole(t)
	other, _ := signIn(t, s, "good-beta")
	for range maxPerPrincipal + 5 {
		signIn(t, s, "good-acme")
	}
	mine := 0
	for _, ss := range s.sessions {
		if ss.who.Tenant == "acme" {
			mine++
		}
	}
	if mine != maxPerPrincipal || s.sessions[sessionOf(other).Value] == nil {
		t.Fatalf("%d sessions of acme's key; beta's session kept: %v", mine, s.sessions[sessionOf(other).Value] != nil)
	}
}

// TestFormsAreBounded: a POST that is not a form, or is over 64 KiB, is
// refused without being read (found in review: 200 MB were spooled to disk
// before sign-in failed).
func TestFormsAreBounded(t *testing.T) {
	s, _, _ := newTestConsole(t)
	req := httptest.NewRequest("POST", "/console/login", strings.NewReader("--x\r\n"))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("multipart: %d", rec.Code)
	}
	get := httptest.NewRecorder()
	s.ServeHTTP(get, httptest.NewRequest("GET", "/console/login", nil))
	login := get.Result().Cookies()[0]
	big := strings.NewReader("csrf=" + login.Value + "&key=" + strings.Repeat("a", 1<<20))
	req = httptest.NewRequest("POST", "/console/login", big)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(login)
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code < 400 || big.Len() < 1<<20-2*maxForm {
		t.Fatalf("a 1 MiB form: %d, %d bytes left unread", rec.Code, big.Len())
	}
}

// TestARevokedKeyEndsItsSession: when the API no longer takes the signed-in
// key, the session ends and the browser goes to sign in (found in review:
// every page was a 401 with the nav, "back" looped).
func TestARevokedKeyEndsItsSession(t *testing.T) {
	s, _, api := newTestConsole(t)
	sess := sessionOf(func() []*http.Cookie { c, _ := signIn(t, s, "good"); return c }())
	api.answer = func(*http.Request) (int, string) {
		return 401, `{"title":"Unauthorized","status":401,"detail":"invalid or inactive key","code":"unauthenticated"}`
	}
	req := httptest.NewRequest("GET", "/console/tenants/acme/keys", nil)
	req.AddCookie(sess)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/console/login" || s.sessions[sess.Value] != nil {
		t.Fatalf("a revoked key's session: %d %s", rec.Code, rec.Header().Get("Location"))
	}
}

// TestASecretIsNeverSearchedByURL: a secret pasted into the key search is
// refused before the API is asked (it would sit in the URL and history);
// "Which key is this?" takes it by POST.
func TestASecretIsNeverSearchedByURL(t *testing.T) {
	s, _, api := newTestConsole(t)
	sess := sessionOf(func() []*http.Cookie { c, _ := signIn(t, s, "good"); return c }())
	before := api.calls.Load()
	req := httptest.NewRequest("GET", "/console/tenants/acme/keys?q=kt_2Kx9aQp7LmN3vB8cD1eF4gH6jK0mP5rS", nil)
	req.AddCookie(sess)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || api.calls.Load() != before || !strings.Contains(rec.Body.String(), "Which key is this?") {
		t.Fatalf("a secret searched by URL: %d", rec.Code)
	}
}

// TestNewestDecisionsFirst: the key page's recent decisions and the
// decisions page show the newest, newest first, though the API pages
// oldest first (found in review: the oldest 20 were shown).
func TestNewestDecisionsFirst(t *testing.T) {
	api := &problemAPI{}
	const total = 2500
	api.answer = func(r *http.Request) (int, string) {
		from := 0
		if c := r.URL.Query().Get("cursor"); c != "" {
			from, _ = strconv.Atoi(c)
		}
		var b strings.Builder
		b.WriteString(`{"decisions":[`)
		to := min(from+1000, total)
		for i := from; i < to; i++ {
			if i > from {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"log_seq":%d,"code":"REVOKED","method":"GET","path":"/d%d","node":"n","request_id":"r","now":"2026-12-07T00:00:00Z","seq":1}`, i+1, i)
		}
		b.WriteString("]")
		if to < total {
			fmt.Fprintf(&b, `,"next_cursor":"%d"`, to)
		}
		b.WriteString("}")
		return 200, b.String()
	}
	c := client.New("http://console.invalid", "", &http.Client{Transport: api})
	got, more, err := newestDecisions(context.Background(), c, "acme", client.DecisionQuery{}, 20)
	if err != nil || !more || len(got) != 20 || got[0].LogSeq != total || got[19].LogSeq != total-19 {
		t.Fatalf("newest: %v %v %d first %d", err, more, len(got), got[0].LogSeq)
	}
}
