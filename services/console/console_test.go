package console

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// problemAPI answers every API call with a 404 problem: the console's
// handlers must turn any answer into a page.
type problemAPI struct{ calls atomic.Int64 }

func (p *problemAPI) RoundTrip(r *http.Request) (*http.Response, error) {
	p.calls.Add(1)
	body := `{"type":"about:blank","title":"Not found","status":404,"detail":"not found","code":"not_found"}`
	return &http.Response{StatusCode: 404, Header: http.Header{"Content-Type": {"application/problem+json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

// keyAuth signs in the one key "good" as the root.
type keyAuth struct{ api *problemAPI }

func (a keyAuth) SignIn(_ context.Context, key string) (Who, http.RoundTripper, error) {
	if key != "good" {
		return Who{}, nil, errors.New("no")
	}
	return Who{Root: true}, a.api, nil
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
	for name, rec := range map[string]*httptest.ResponseRecorder{
		"no token":     do("POST", "/console/tenants/acme/keys/key_x/revoke", "confirm=yes"),
		"wrong token":  do("POST", "/console/tenants/acme/keys/key_x/revoke", "confirm=yes&csrf=x"+csrf[1:]),
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
	if rec := do("POST", "/console/tenants/acme/keys/key_x/revoke", "csrf="+csrf); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Yes, do it") || api.calls.Load() != before {
		t.Fatalf("an unconfirmed revoke: %d", rec.Code)
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
