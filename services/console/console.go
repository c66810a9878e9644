// Package console is Keytrail's web console: server-rendered pages under
// /console/ on the admin listener, for tenant admins and support. It signs
// in with an admin key (kept by nobody: a session holds who signed in, and
// the API checks that key again on every request), and reads and writes
// only through the admin API, in-process, with the typed client — so every
// page is subject to exactly the API's authorization, validation and
// tenant isolation. Pages read without JavaScript; the little script there
// is (a copy button) is the console's own, as are the styles; charts are
// SVG drawn on the server.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keytrail/keytrail/client"
)

// Who signed in: the root, or a tenant's admin key.
type Who struct {
	Root   bool
	Tenant string
	KeyID  string
}

// Auth checks an admin key and returns who it is with a RoundTripper that
// calls the admin API as them (the key is not kept).
type Auth interface {
	SignIn(ctx context.Context, key string) (Who, http.RoundTripper, error)
}

// Config is a console's.
type Config struct {
	Auth Auth
	// Secure marks the cookies Secure (the admin listener serves TLS).
	Secure bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// TTL bounds a session (8 h when zero); Idle ends one unused for that
	// long (30 min when zero).
	TTL, Idle time.Duration
	Log       *slog.Logger
}

// Server serves the console.
type Server struct {
	cfg   Config
	mux   *http.ServeMux
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	id, csrf    string
	who         Who
	api         *client.Client
	start, seen time.Time
}

const (
	sessionCookie = "keytrail_session"
	loginCookie   = "keytrail_login"
	// maxSessions bounds the sessions of a node; maxPerPrincipal those of
	// one key (its oldest ends first), so that one admin cannot push the
	// others out.
	maxSessions     = 10000
	maxPerPrincipal = 20
	// maxForm bounds a form's body.
	maxForm = 64 << 10
)

//go:embed assets
var assets embed.FS

// New returns the console.
func New(cfg Config) (*Server, error) {
	if cfg.Auth == nil {
		return nil, errors.New("console: an Auth is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 8 * time.Hour
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 30 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), sessions: map[string]*session{}, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{"when": when, "whenp": whenPtr, "ago": func(t time.Time) string { return ago(cfg.Now(), t) },
		"agop": func(t *time.Time) string {
			if t == nil {
				return "never"
			}
			return ago(cfg.Now(), *t)
		}, "badge": badge, "join": strings.Join, "pathesc": url.PathEscape, "stops": stops}
	names, err := fs.Glob(assets, "assets/*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		page := strings.TrimSuffix(strings.TrimPrefix(name, "assets/"), ".html")
		if page == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "assets/layout.html", name)
		if err != nil {
			return nil, fmt.Errorf("console: %s: %w", name, err)
		}
		s.pages[page] = t
	}
	s.routes()
	return s, nil
}

// ServeHTTP serves /console/….
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Nothing of the console is framed, sniffed, cached or sent elsewhere;
	// scripts and styles are its own only.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin: the browser names this origin on the console's own
	// POSTs (no-referrer would make it "null"), and nothing elsewhere.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			s.fail(w, r, nil, http.StatusUnsupportedMediaType, "the console takes forms (application/x-www-form-urlencoded) only")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	}
	s.mux.ServeHTTP(w, r)
}

// page is what a handler of a signed-in page returns: a template and its
// data, or a status to answer with a message.
type page struct {
	name  string
	title string
	data  any
}

// view is what every template gets.
type view struct {
	Title  string
	Who    Who
	CSRF   string
	Tenant string
	Nav    string
	Data   any
	Error  string
	Status int
}

// handler is a signed-in page.
type handler func(r *http.Request, ss *session) (page, error)

// signedIn runs h for a signed-in session; POSTs must carry the session's
// CSRF token. Another tenant's pages are not found, as in the API.
func (s *Server) signedIn(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := s.session(r)
		if ss == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/console/login", http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, http.StatusUnauthorized, "sign in first")
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(ss.csrf)) != 1 {
				s.fail(w, r, ss, http.StatusForbidden, "this form is not one the console gave you (missing or wrong CSRF token); reload the page and try again")
				return
			}
		}
		if t := r.PathValue("tenant"); t != "" && !ss.who.Root && t != ss.who.Tenant {
			s.fail(w, r, ss, http.StatusNotFound, "not found")
			return
		}
		p, err := h(r, ss)
		if err != nil {
			var redirect redirectTo
			if errors.As(err, &redirect) {
				http.Redirect(w, r, string(redirect), http.StatusSeeOther)
				return
			}
			status, msg := http.StatusInternalServerError, "something went wrong; the node's log says what"
			var pr *client.Problem
			if errors.As(err, &pr) {
				status, msg = pr.Status, pr.Detail
				if msg == "" {
					msg = pr.Title
				}
				if status == http.StatusUnauthorized {
					// The key was revoked, suspended or its user disabled
					// since sign-in: the session ends with it.
					s.end(w, ss)
					http.Redirect(w, r, "/console/login", http.StatusSeeOther)
					return
				}
			} else {
				s.cfg.Log.Warn("console page failed", "path", r.URL.Path, "err", err)
			}
			s.fail(w, r, ss, status, msg)
			return
		}
		s.render(w, http.StatusOK, p, ss, r.PathValue("tenant"))
	}
}

// redirectTo is a handler's answer that sends the browser elsewhere (after
// a form's POST).
type redirectTo string

func (r redirectTo) Error() string { return "see " + string(r) }

func (s *Server) render(w http.ResponseWriter, status int, p page, ss *session, tenant string) {
	v := view{Title: p.title, Data: p.data, Tenant: tenant, Nav: p.name, Status: status}
	if ss != nil {
		v.Who, v.CSRF = ss.who, ss.csrf
		if !ss.who.Root {
			v.Tenant = ss.who.Tenant // a tenant admin's links are its own tenant's, whatever the path
		}
	}
	t := s.pages[p.name]
	if t == nil {
		http.Error(w, "no page "+p.name, http.StatusInternalServerError)
		return
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout.html", v); err != nil {
		s.cfg.Log.Warn("console page not rendered", "page", p.name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(b.String()))
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, ss *session, status int, msg string) {
	if status < 400 {
		status = http.StatusBadGateway
	}
	s.render(w, status, page{name: "error", title: http.StatusText(status), data: msg}, ss, r.PathValue("tenant"))
}

// sameOrigin refuses a POST whose Origin (when the browser sends one) is
// not this host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func token() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// session returns the request's live session, nil when there is none.
func (s *Server) session(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || len(c.Value) != 43 {
		return nil
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[c.Value]
	if ss == nil {
		return nil
	}
	if now.Sub(ss.start) > s.cfg.TTL || now.Sub(ss.seen) > s.cfg.Idle {
		delete(s.sessions, ss.id)
		return nil
	}
	ss.seen = now
	return ss
}

func (s *Server) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/console/", MaxAge: maxAge, HttpOnly: true, Secure: s.cfg.Secure,
		SameSite: http.SameSiteStrictMode}
}

// start makes a session for who.
func (s *Server) start(w http.ResponseWriter, who Who, rt http.RoundTripper) *session {
	now := s.cfg.Now()
	ss := &session{id: token(), csrf: token(), who: who, start: now, seen: now,
		api: client.New("http://console.invalid", "", &http.Client{Transport: rt, Timeout: 30 * time.Second})}
	s.mu.Lock()
	defer s.mu.Unlock()
	var mine []*session
	for id, old := range s.sessions {
		switch {
		case now.Sub(old.start) > s.cfg.TTL || now.Sub(old.seen) > s.cfg.Idle:
			delete(s.sessions, id)
		case old.who == who:
			mine = append(mine, old)
		}
	}
	if len(mine) >= maxPerPrincipal {
		slices.SortFunc(mine, func(a, b *session) int { return a.seen.Compare(b.seen) })
		for _, old := range mine[:len(mine)-maxPerPrincipal+1] {
			delete(s.sessions, old.id)
		}
	}
	if len(s.sessions) >= maxSessions {
		return nil
	}
	s.sessions[ss.id] = ss
	http.SetCookie(w, s.cookie(sessionCookie, ss.id, int(s.cfg.TTL.Seconds())))
	return ss
}

// end ends a session and clears its cookie.
func (s *Server) end(w http.ResponseWriter, ss *session) {
	if ss != nil {
		s.mu.Lock()
		delete(s.sessions, ss.id)
		s.mu.Unlock()
	}
	http.SetCookie(w, s.cookie(sessionCookie, "", -1))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		if ss := s.session(r); ss != nil {
			http.Redirect(w, r, home(ss.who), http.StatusSeeOther)
			return
		}
		t := token()
		http.SetCookie(w, s.cookie(loginCookie, t, 600))
		s.render(w, http.StatusOK, page{name: "login", title: "Sign in", data: t}, nil, "")
		return
	}
	// The form's token must be the one this browser was given with it.
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		s.fail(w, r, nil, http.StatusForbidden, "this form is not one the console gave you; reload the sign-in page")
		return
	}
	key := r.PostFormValue("key")
	who, rt, err := s.cfg.Auth.SignIn(r.Context(), key)
	if err != nil {
		s.cfg.Log.Info("console sign-in refused", "remote", r.RemoteAddr) // never the key
		t := token()
		http.SetCookie(w, s.cookie(loginCookie, t, 600))
		s.render(w, http.StatusUnauthorized, page{name: "login", title: "Sign in", data: t}, nil, "")
		return
	}
	http.SetCookie(w, s.cookie(loginCookie, "", -1))
	if old := s.session(r); old != nil {
		s.end(w, old) // a session this browser had ends
	}
	ss := s.start(w, who, rt)
	if ss == nil {
		s.fail(w, r, nil, http.StatusServiceUnavailable, "this node has as many console sessions as it keeps; try again later")
		return
	}
	s.cfg.Log.Info("console sign-in", "actor", actorOf(who))
	http.Redirect(w, r, home(ss.who), http.StatusSeeOther)
}

// actorOf names who signed in, as events do.
func actorOf(w Who) string {
	if w.Root {
		return "root"
	}
	return w.KeyID
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	ss := s.session(r)
	if ss != nil && subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(ss.csrf)) != 1 {
		s.fail(w, r, ss, http.StatusForbidden, "this form is not one the console gave you")
		return
	}
	s.end(w, ss)
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// home is where a session starts: the tenants for the root, the tenant's
// overview for its admin.
func home(w Who) string {
	if w.Root {
		return "/console/tenants"
	}
	return "/console/tenants/" + url.PathEscape(w.Tenant)
}

func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	b, err := assets.ReadFile("assets/" + name)
	if err != nil || strings.HasSuffix(name, ".html") {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	}
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Write(b)
}
