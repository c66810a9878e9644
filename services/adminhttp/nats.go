package adminhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/services/control"
)

// Revocations other services publish: a NATS request to
// keytrail.cmd.<tenant>.keys.revoke, served by every control node in one
// queue group.
const (
	RevocationQueue   = "keytrail-control"
	maxRevocationBody = 64 << 10
)

// RevokeRequest is the body of a revocation over NATS: one key; or every key
// of a user issued before a time (now when none); or, with only before, every
// key of the tenant issued before it.
type RevokeRequest struct {
	Key    string     `json:"key,omitempty"`
	User   string     `json:"user,omitempty"`
	Before *time.Time `json:"before,omitempty"`
	Reason string     `json:"reason,omitempty"`
}

// RevokeReply is the answer to a revocation that was applied (or was one
// already): the sequence of the event, or of the one that covers it.
type RevokeReply struct {
	Seq uint64 `json:"seq"`
}

// StatusHeader carries the HTTP status of a NATS reply (not "Status", which
// NATS itself uses): 200 with a
// RevokeReply, or a problem's status with the problem.
const StatusHeader = "Keytrail-Status"

// ServeRevocations answers revocation requests on nc until the returned
// subscription is drained or unsubscribed. A request goes through the same
// handler chain as HTTP — the bearer key in the Authorization header, the
// same validation, Idempotency-Key, problems, access log and metrics — as
// the matching admin route.
func (s *Server) ServeRevocations(nc *nats.Conn) (*nats.Subscription, error) {
	return nc.QueueSubscribe(events.RevocationSubjects, RevocationQueue, s.revocation)
}

func (s *Server) revocation(m *nats.Msg) {
	if m.Reply == "" {
		return // a revocation must be answered: fire-and-forget is refused
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	route, body, bad := revocationRoute(m)
	r, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/", bytes.NewReader(body))
	r.URL.Path = route
	r.RemoteAddr = "nats"
	r.Header.Set("Content-Type", "application/json")
	for _, h := range []string{"Authorization", "Idempotency-Key"} {
		if v := m.Header.Get(h); v != "" {
			r.Header.Set(h, v)
		}
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	var h http.Handler = s.mux
	if bad != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeError(w, r, s.cfg.Log, bad) })
	}
	s.serve(rec, r, h)

	reply := nats.NewMsg(m.Reply)
	reply.Header.Set(StatusHeader, strconv.Itoa(rec.status))
	reply.Header.Set("Content-Type", rec.header.Get("Content-Type"))
	reply.Data = rec.body.Bytes()
	if rec.status < 300 {
		seq, _ := strconv.ParseUint(rec.header.Get("Keytrail-Seq"), 10, 64)
		reply.Data, _ = json.Marshal(RevokeReply{Seq: seq})
		reply.Header.Set("Content-Type", "application/json")
	}
	m.RespondMsg(reply)
}

// revocationRoute maps a NATS revocation to the admin route that does the
// same, from ids validated before they become part of a path. bad is the
// problem when the request is not a valid revocation.
func revocationRoute(m *nats.Msg) (route string, body []byte, bad error) {
	invalid := func(msg string) (string, []byte, error) {
		return "/", nil, &control.Error{Code: control.CodeInvalidArgument, Message: msg}
	}
	tokens := strings.Split(m.Subject, ".")
	if len(tokens) != 5 || !events.ValidTenantID(tokens[2]) {
		return invalid("the subject must be keytrail.cmd.<tenant>.keys.revoke with a valid tenant id")
	}
	tenant := tokens[2]
	if len(m.Data) > maxRevocationBody {
		return invalid("the body is over 64 KiB")
	}
	var q RevokeRequest
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return invalid("invalid JSON: " + jsonProblem(err))
	}
	if dec.More() {
		return invalid("invalid JSON: data after the object")
	}
	base := "/v1/tenants/" + tenant
	switch {
	case q.Key != "" && (q.User != "" || q.Before != nil):
		return invalid("a revocation names a key, or a user (and before), or only before (the whole tenant)")
	case q.Key != "":
		if !events.ValidKeyID(q.Key) {
			return invalid("key must be a key id: key_<ULID>")
		}
		body, _ = json.Marshal(reasonBody{Reason: q.Reason})
		return base + "/keys/" + q.Key + "/revoke", body, nil
	case q.User != "":
		if !events.ValidUserID(q.User) {
			return invalid("user must match ^[A-Za-z0-9_-]{1,64}$")
		}
		body, _ = json.Marshal(revokeKeysBody{Before: q.Before, Reason: q.Reason})
		return base + "/users/" + q.User + "/revoke-keys", body, nil
	case q.Before != nil:
		body, _ = json.Marshal(revokeKeysBody{Before: q.Before, Reason: q.Reason})
		return base + "/revoke-keys", body, nil
	}
	return invalid("a revocation names a key, a user, or before (every key of the tenant issued before it)")
}

// recorder is the ResponseWriter of a request answered in-process: one
// that came over NATS, or the console's.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
