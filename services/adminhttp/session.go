package adminhttp

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/services/control"
)

// Principal is who signed in to the console with an admin key: the root,
// or a tenant's admin key — never the key itself, only its hash, kept in
// memory so that every request checks the key again (a key revoked, or
// whose user is disabled, stops working in the console at once).
type Principal struct {
	Root   bool
	Tenant string
	KeyID  string
	hash   events.SecretHash
}

// sessionKey carries a console session's principal in a request's context:
// set only in-process (RoundTripper), never from anything on the wire.
type sessionKey struct{}

// SignIn checks an admin key as the API does (the root key, or an active
// key with the admin scope) and returns who it is.
func (s *Server) SignIn(key string) (Principal, error) {
	sec, err := secret.Parse(strings.TrimSpace(key), s.cfg.SecretPrefix)
	if err != nil {
		return Principal{}, &control.Error{Code: control.CodeUnauthenticated, Message: "invalid or inactive key"}
	}
	h := sec.Hash()
	p, err := s.authenticateHash(h, AdminScope)
	if err != nil {
		return Principal{}, err
	}
	return Principal{Root: p.root, Tenant: p.tenant, KeyID: p.keyID, hash: h}, nil
}

// RoundTripper answers requests in-process, authenticated as p: the
// console's client calls the API through it, so that every page is subject
// to exactly the API's authorization, validation and isolation.
func (s *Server) RoundTripper(p Principal) http.RoundTripper { return inProcess{s: s, p: p} }

type inProcess struct {
	s *Server
	p Principal
}

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(context.WithValue(req.Context(), sessionKey{}, &t.p))
	r.Header.Del("Authorization")
	r.RequestURI, r.RemoteAddr = r.URL.RequestURI(), "console"
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	t.s.ServeHTTP(rec, r)
	return &http.Response{Status: strconv.Itoa(rec.status) + " " + http.StatusText(rec.status), StatusCode: rec.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: rec.header, Body: io.NopCloser(&rec.body),
		ContentLength: int64(rec.body.Len()), Request: req}, nil
}
