// Package adminhttp is the admin HTTP API of the product brief: bearer
// authentication (the root key, or admin keys confined to their tenant),
// problem+json errors with stable codes, Idempotency-Key, If-Match,
// Keytrail-Seq and Keytrail-Min-Seq, strict JSON bodies of bounded size,
// cursor pagination. It translates HTTP to control commands and read-model
// queries and nothing else.
package adminhttp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/readmodel"
)

// AdminScope is the scope of keys that administer their own tenant.
const AdminScope = "keytrail:admin"

// Config is what the API needs.
type Config struct {
	Control *control.Service
	Model   *readmodel.Model
	// RootKeyHash is the SHA-256 of the root key.
	RootKeyHash  events.SecretHash
	SecretPrefix string
	Now          func() time.Time
	Log          *slog.Logger
	// MaxBody bounds request bodies (default 64 KiB).
	MaxBody int64
	// MinSeqWait bounds the wait for Keytrail-Min-Seq (default 5 s).
	MinSeqWait time.Duration
	// Timeout bounds every request: one the event log does not answer in
	// time gets 503 unavailable (default 10 s).
	Timeout time.Duration
	// Quotas bound what one tenant may hold (defaults: DefaultQuotas).
	Quotas Quotas
	// Idempotency, when set, remembers which request each Idempotency-Key
	// was first used with, so that its use with another one is refused
	// (422) across every control node. Without it the key is still bound to
	// the request (a different body is a different command).
	Idempotency Idempotency
	// Usage answers the usage routes and the keys' last use (a control
	// node's rollups); nil: the usage routes answer 503.
	Usage UsageSource
	// Decisions searches the decision log (GET …/decisions); nil: 503.
	Decisions DecisionSource
	// Webhooks reads delivery attempts and queues replays; nil: 503.
	Webhooks WebhookLog
}

// UsageSource is the usage fold of a control node.
type UsageSource interface {
	// Read calls fn with the fold under a read lock.
	Read(fn func(u *projections.Usage))
}

// Quotas bound what one tenant may hold, checked against the read model
// when something is created (so a burst of concurrent creations may pass a
// quota by the writes in flight), and how much metadata one key may carry.
type Quotas struct {
	Users, Keys, APIs int
	MetadataBytes     int // keys and values of one key's metadata, together
	// Policies bounds a tenant's policies, retired ones aside (0: the
	// default).
	Policies int
}

// DefaultQuotas are the quotas of a tenant unless configured otherwise.
var DefaultQuotas = Quotas{Users: 100_000, Keys: 100_000, APIs: 1_000, MetadataBytes: 4096, Policies: 1_000}

// quota refuses creating one more of what (users, keys, apis) when the
// tenant holds its quota of them.
func (s *Server) quota(tenant, what string) error {
	var have [4]int
	s.cfg.Model.Read(func(c *projections.Catalog) {
		have[0], have[1], have[2] = c.Counts(tenant)
		have[3] = c.LivePolicies(tenant)
	})
	i := map[string]int{"users": 0, "keys": 1, "apis": 2, "policies": 3}[what]
	policies := s.cfg.Quotas.Policies
	if policies == 0 {
		policies = DefaultQuotas.Policies
	}
	limit := [4]int{s.cfg.Quotas.Users, s.cfg.Quotas.Keys, s.cfg.Quotas.APIs, policies}[i]
	if have[i] >= limit {
		return &control.Error{Code: control.CodeFailedPrecondition,
			Message: fmt.Sprintf("quota: tenant %s holds %d %s, the most it may; remove some, or ask the operator to raise the quota", tenant, have[i], what)}
	}
	return nil
}

// metadataQuota refuses a key's metadata over the quota in bytes.
func (s *Server) metadataQuota(md map[string]string) error {
	n := 0
	for k, v := range md {
		n += len(k) + len(v)
	}
	if n > s.cfg.Quotas.MetadataBytes {
		return &control.Error{Code: control.CodeInvalidArgument,
			Message: fmt.Sprintf("metadata: %d bytes of keys and values, at most %d", n, s.cfg.Quotas.MetadataBytes)}
	}
	return nil
}

// Idempotency is what remembers Idempotency-Keys (store.IdempotencyKeys).
type Idempotency interface {
	Claim(ctx context.Context, key string, digest [32]byte) error
}

// Server serves the admin API.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	metrics *metrics
	// handlers are what the route functions registered, by pattern; only
	// the rows of Routes are mounted (mount), so a handler without a row is
	// never served.
	handlers map[string]http.HandlerFunc
	// unlisted and unserved are the patterns with a handler but no row, and
	// with a row but no handler: both empty, or a test fails.
	unlisted, unserved []string
}

// route registers the handler of a row of Routes.
func (s *Server) route(pattern string, h http.HandlerFunc) { s.handlers[pattern] = h }

// mount serves the handler of every row of Routes, in the table's order;
// a row without a handler answers 500 (and is reported in unserved), a
// handler without a row is not served (unlisted).
func (s *Server) mount() {
	listed := map[string]bool{}
	for _, pattern := range Routes {
		listed[pattern] = true
		h := s.handlers[pattern]
		if h == nil {
			s.unserved = append(s.unserved, pattern)
			h = func(w http.ResponseWriter, r *http.Request) {
				writeProblem(w, r, control.CodeInternal, "internal error", "")
			}
		}
		s.mux.HandleFunc(pattern, h)
	}
	for pattern := range s.handlers {
		if !listed[pattern] {
			s.unlisted = append(s.unlisted, pattern)
		}
	}
}

// New returns the API's handler.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SecretPrefix == "" {
		cfg.SecretPrefix = secret.DefaultPrefix
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.MinSeqWait <= 0 {
		cfg.MinSeqWait = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Quotas == (Quotas{}) {
		cfg.Quotas = DefaultQuotas
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), handlers: map[string]http.HandlerFunc{}}
	s.metrics = newMetrics(s)
	s.routes()
	return s
}

type ctxKey struct{}

// reqInfo travels in a request's context: its id, and who it authenticated
// as once it has (for the access log).
type reqInfo struct {
	id string
	p  *principal
	// body is the SHA-256 of the request body as read (of nothing when
	// there was none): part of what an Idempotency-Key is bound to.
	body [32]byte
	// plan is set for a dry run (?dry_run=true), and for a tenant admin's
	// write judged before it is made (guard): the command records what it
	// would append there (control.Meta.Plan).
	plan *control.Plan
	// asOf is the read model's sequence when a tenant admin's write was
	// judged (guard).
	asOf uint64
}

func info(r *http.Request) *reqInfo {
	ri, _ := r.Context().Value(ctxKey{}).(*reqInfo)
	if ri == nil {
		return &reqInfo{}
	}
	return ri
}

func requestID(r *http.Request) string { return info(r).id }

// ServeHTTP adds a request id and an access log line to every request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; p == "" || path.Clean(p) != p {
		// Not a route (the mux would answer a redirect in HTML): 404.
		s.serve(w, r, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, r, control.CodeNotFound, "no such route", "")
		}))
		return
	}
	s.serve(w, r, s.mux)
}

// serve runs h with what every request gets: an id, metrics, an access log
// line. Requests that arrive over NATS get them too.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, h http.Handler) {
	start := time.Now()
	var b [8]byte
	rand.Read(b[:])
	ri := &reqInfo{id: hex.EncodeToString(b[:])}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), ctxKey{}, ri), s.cfg.Timeout)
	defer cancel()
	r = r.WithContext(ctx)
	w.Header().Set("X-Request-Id", ri.id)
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	if s.cfg.Model.Refused() != nil && !operatorPaths[r.URL.Path] {
		// The node no longer trusts the stream: neither writes onto it nor
		// answers from what it folded of it. Why is in the log.
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, r, control.CodeUnavailable, "this node refuses the event stream: it is not the history the node saw (see the node's log)", "")
		})
	}
	h.ServeHTTP(rec, r)
	s.metrics.observe(r.Pattern, rec.status, time.Since(start).Seconds())
	s.cfg.Log.Info("http", "request_id", ri.id, "method", r.Method, "path", r.URL.Path, "status", rec.status,
		"duration_ms", float64(time.Since(start).Microseconds())/1000, "actor", ri.p.actor())
}

// operatorPaths answer even when the node refuses the stream: they say so.
var operatorPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true, "/openapi.json": true}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// principal is who a request authenticated as.
type principal struct {
	root   bool
	tenant string // for admin keys
	keyID  string
}

func (p *principal) actor() string {
	switch {
	case p == nil:
		return ""
	case p.root:
		return "root"
	}
	return p.keyID
}

// authenticate resolves the bearer key, which must hold one of scopes (the
// admin scope by default). Every failure is the same 401, so that nothing is
// learnt about keys by probing.
func (s *Server) authenticate(r *http.Request, scopes ...string) (*principal, error) {
	if len(scopes) == 0 {
		scopes = []string{AdminScope}
	}
	if sp, ok := r.Context().Value(sessionKey{}).(*Principal); ok {
		// A console session: its key, checked again now.
		return s.authenticateHash(sp.hash, scopes...)
	}
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
		return nil, &control.Error{Code: control.CodeUnauthenticated, Message: "an admin key is required: Authorization: Bearer <key>"}
	}
	sec, err := secret.Parse(strings.TrimSpace(token), s.cfg.SecretPrefix)
	if err != nil {
		return nil, &control.Error{Code: control.CodeUnauthenticated, Message: "invalid or inactive key"}
	}
	p, err := s.authenticateHash(sec.Hash(), scopes...)
	var ce *control.Error
	if errors.As(err, &ce) && ce.Code == control.CodeUnauthenticated && r.Header.Get("Keytrail-Min-Seq") != "" {
		// A key issued a moment ago: wait until the read model has what the
		// caller says it saw, then look again.
		if err := s.minSeq(r); err != nil {
			return nil, err
		}
		p, err = s.authenticateHash(sec.Hash(), scopes...)
	}
	return p, err
}

// authenticateHash resolves a key by its hash: the root key, or an active
// key holding one of scopes.
func (s *Server) authenticateHash(h events.SecretHash, scopes ...string) (*principal, error) {
	if h.Equal(s.cfg.RootKeyHash) {
		return &principal{root: true}, nil
	}
	var d projections.Decision
	s.cfg.Model.Read(func(c *projections.Catalog) {
		for _, scope := range scopes {
			if d = c.VerifyHash(h, projections.Request{Scopes: []string{scope}}, s.cfg.Now()); d.Code == projections.CodeValid {
				return
			}
		}
	})
	switch d.Code {
	case projections.CodeValid:
		return &principal{tenant: d.Tenant, keyID: d.KeyID}, nil
	case projections.CodeInsufficientScope:
		return nil, &control.Error{Code: control.CodePermissionDenied, Message: "this key lacks the " + strings.Join(scopes, " or ") + " scope"}
	}
	return nil, &control.Error{Code: control.CodeUnauthenticated, Message: "invalid or inactive key"}
}

// handler is an authenticated endpoint.
type handler func(w http.ResponseWriter, r *http.Request, p *principal) error

// access says who may call an endpoint.
type access int

const (
	rootOnly    access = iota // operations on tenants themselves
	tenantAdmin               // the root key, or an admin key of the {tenant} in the path
)

func (s *Server) handle(pattern string, who access, h handler) {
	s.handleScoped(pattern, who, nil, h)
}

// handleScoped is handle for keys holding one of scopes.
func (s *Server) handleScoped(pattern string, who access, scopes []string, h handler) {
	s.route(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r, scopes...)
		if err != nil {
			writeError(w, r, s.cfg.Log, err)
			return
		}
		info(r).p = p
		if !p.root {
			tenant := r.PathValue("tenant")
			switch {
			case tenant != "" && tenant != p.tenant:
				// Another tenant's objects: as if they did not exist.
				writeProblem(w, r, control.CodeNotFound, "not found", "")
				return
			case who == rootOnly:
				writeProblem(w, r, control.CodePermissionDenied, "only the root key may do this", "")
				return
			}
		}
		if tenant := r.PathValue("tenant"); tenant != "" && r.Method == http.MethodGet && (createsObject(pattern) ||
			strings.HasSuffix(pattern, "/usage") || strings.HasSuffix(pattern, "/decisions")) {
			// A list under a tenant that does not exist is 404, not an
			// empty list (after Keytrail-Min-Seq, which a list honours;
			// single objects are read from the log and say so themselves).
			if err := s.minSeq(r); err != nil {
				writeError(w, r, s.cfg.Log, err)
				return
			}
			var exists bool
			s.cfg.Model.Read(func(c *projections.Catalog) { _, exists = c.Tenant(tenant) })
			if !exists {
				writeProblem(w, r, control.CodeNotFound, "no tenant "+clip(tenant), "")
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
		dry, err := dryRun(r, pattern)
		if err != nil {
			writeError(w, r, s.cfg.Log, err)
			return
		}
		if dry {
			s.dryRun(w, r, p, pattern, h)
			return
		}
		if !s.guard(w, r, p, pattern, h) {
			return
		}
		if err := h(w, r, p); err != nil {
			writeError(w, r, s.cfg.Log, err)
		}
	})
}

// meta builds a command's meta from the request: the actor, the reason,
// If-Match (refused on a creation, which has no version to match: creates),
// and a command id from Idempotency-Key bound to the caller, the route and
// the body, so that two different requests never make one command, nor
// one object id. With cfg.Idempotency, a key reused with another request
// within the window is refused with 422 and nothing is appended.
func (s *Server) meta(r *http.Request, p *principal, reason string, creates bool) (control.Meta, error) {
	m := control.Meta{Actor: p.actor(), Reason: reason, CorrelationID: requestID(r)}
	v, err := ifMatch(r)
	if err != nil {
		return m, err
	}
	if v != nil && creates {
		return m, &control.Error{Code: control.CodeInvalidArgument, Message: "If-Match: a creation has no version to match; send it on writes to an existing object"}
	}
	m.IfMatch = v
	if !p.root {
		// A tenant admin grants only what its key holds: the command
		// checks the policies it touches against these (control.Confinement).
		m.Confine = &control.Confinement{KeyID: p.keyID, AsOf: info(r).asOf}
		s.cfg.Model.Read(func(c *projections.Catalog) { m.Confine.Scopes = c.KeyScopes(p.tenant, p.keyID) })
	}
	if m.Plan = info(r).plan; m.Plan != nil {
		// A dry run claims no Idempotency-Key: it appends nothing, and the
		// real request that follows must be free to use the key.
		return m, nil
	}
	k := r.Header.Get("Idempotency-Key")
	if k == "" {
		return m, nil
	}
	if len(k) > 255 {
		return m, &control.Error{Code: control.CodeInvalidArgument, Message: "Idempotency-Key is over 255 characters"}
	}
	// The key is the caller's: recorded by caller and key, with the digest
	// of the request it was first used for (route and body), so that its
	// use for another route or body is refused.
	body := info(r).body
	request := sha256.Sum256(append([]byte(r.Method+"\x00"+r.URL.Path+"\x00"), body[:]...))
	record := sha256.Sum256([]byte(p.actor() + "\x00" + k))
	cmd := sha256.Sum256(append(record[:], request[:]...))
	m.CommandID = "idem-" + hex.EncodeToString(cmd[:20])
	if s.cfg.Idempotency != nil {
		err := s.cfg.Idempotency.Claim(r.Context(), hex.EncodeToString(record[:]), request)
		switch {
		case errors.Is(err, store.ErrIdempotencyMismatch):
			return m, &control.Error{Code: control.CodeIdempotencyMismatch,
				Message: "this Idempotency-Key was used with another request (route, caller or body) within the window; use a new key for a new request"}
		case errors.Is(err, store.ErrUnavailable):
			return m, &control.Error{Code: control.CodeUnavailable, Message: "the idempotency record did not answer in time"}
		case err != nil:
			return m, err
		}
	}
	return m, nil
}

// ifMatch reads If-Match: a version number (quotes allowed, as an ETag).
func ifMatch(r *http.Request) (*uint64, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" {
		return nil, nil
	}
	if uq, ok := strings.CutPrefix(v, `"`); ok {
		if v, ok = strings.CutSuffix(uq, `"`); !ok {
			return nil, &control.Error{Code: control.CodeInvalidArgument, Message: "If-Match must be a version number, quoted or not"}
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return nil, &control.Error{Code: control.CodeInvalidArgument, Message: "If-Match must be a version number"}
	}
	return &n, nil
}

// minSeq honours Keytrail-Min-Seq: wait until the read model applied it.
func (s *Server) minSeq(r *http.Request) error {
	v := r.Header.Get("Keytrail-Min-Seq")
	if v == "" {
		return nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return &control.Error{Code: control.CodeInvalidArgument, Message: "Keytrail-Min-Seq must be a sequence number"}
	}
	if err := s.cfg.Model.WaitFor(r.Context(), n, s.cfg.MinSeqWait); err != nil {
		return &control.Error{Code: control.CodeUnavailable, Message: fmt.Sprintf("not caught up with sequence %d yet", n)}
	}
	return nil
}

// written answers a write with the sequence it produced in Keytrail-Seq and
// in the body's "seq".
func written(w http.ResponseWriter, status int, res control.Result, body map[string]any) error {
	w.Header().Set("Keytrail-Seq", strconv.FormatUint(res.Seq, 10))
	body["seq"] = res.Seq
	writeJSON(w, status, body)
	return nil
}

// clip is a value from a request as a problem may quote it: at most 64
// bytes, so that a hostile parameter is not echoed whole.
func clip(v string) string {
	const most = 64
	if len(v) <= most {
		return v
	}
	return v[:most] + "…"
}
