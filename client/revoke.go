package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Revoker revokes keys over NATS: a request to
// keytrail.cmd.<tenant>.keys.revoke that any control node answers. It is
// for services on the bus that must revoke without reaching the admin API
// (a fraud detector, a billing system); authorization is the same admin key
// as over HTTP.
type Revoker struct {
	nc    *nats.Conn
	token string
}

// ServiceInboxPrefix is the inbox prefix of the service identity, the only
// one its replies may use: connect with ServiceOptions, or with
// nats.CustomInboxPrefix(ServiceInboxPrefix) and the identity's seed.
const ServiceInboxPrefix = "_INBOX.service"

// ServiceOptions connect as the service identity whose nkey seed is in
// seedFile (service.nk, from keytrail dev's data directory or keytrail
// nats-config): the identity that may request revocations and nothing else.
func ServiceOptions(seedFile string) ([]nats.Option, error) {
	nkey, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		return nil, fmt.Errorf("keytrail: service identity: %w", err)
	}
	return []nats.Option{nkey, nats.CustomInboxPrefix(ServiceInboxPrefix)}, nil
}

// NewRevoker returns a revoker using nc and token (the root key or the
// tenant's admin key).
func NewRevoker(nc *nats.Conn, token string) *Revoker { return &Revoker{nc: nc, token: token} }

// RevokeKey revokes one key. It returns the sequence of the revocation (or
// of the earlier one that covers it).
func (r *Revoker) RevokeKey(ctx context.Context, tenant, keyID, reason string, call *Call) (uint64, error) {
	return r.revoke(ctx, tenant, revokeRequest{Key: keyID, Reason: reason}, call)
}

// RevokeUserKeys revokes every key of a user issued before before (now when
// nil).
func (r *Revoker) RevokeUserKeys(ctx context.Context, tenant, user string, before *time.Time, reason string, call *Call) (uint64, error) {
	return r.revoke(ctx, tenant, revokeRequest{User: user, Before: before, Reason: reason}, call)
}

// RevokeTenantKeys revokes every key of a tenant issued before before: the
// response to a leak of unknown extent.
func (r *Revoker) RevokeTenantKeys(ctx context.Context, tenant string, before time.Time, reason string, call *Call) (uint64, error) {
	return r.revoke(ctx, tenant, revokeRequest{Before: &before, Reason: reason}, call)
}

type revokeRequest struct {
	Key    string     `json:"key,omitempty"`
	User   string     `json:"user,omitempty"`
	Before *time.Time `json:"before,omitempty"`
	Reason string     `json:"reason,omitempty"`
}

// RevocationSubject is the subject of a tenant's revocations.
func RevocationSubject(tenant string) string { return "keytrail.cmd." + tenant + ".keys.revoke" }

// noControlNodeWait is how long a revocation is asked again while no
// control node answers.
const noControlNodeWait = 3 * time.Second

func (r *Revoker) revoke(ctx context.Context, tenant string, q revokeRequest, call *Call) (uint64, error) {
	data, err := json.Marshal(q)
	if err != nil {
		return 0, fmt.Errorf("keytrail: encode revocation: %w", err)
	}
	m := nats.NewMsg(RevocationSubject(tenant))
	m.Data = data
	m.Header.Set("Authorization", "Bearer "+r.token)
	if call != nil && call.IdempotencyKey != "" {
		m.Header.Set("Idempotency-Key", call.IdempotencyKey)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	// No responder means no control node received it (one is starting or
	// restarting): asked again for a moment, which is safe — nothing was
	// done, and a revocation done twice is done once.
	var reply *nats.Msg
	giveUp := time.Now().Add(noControlNodeWait)
	for wait := 25 * time.Millisecond; ; wait = min(2*wait, 400*time.Millisecond) {
		reply, err = r.nc.RequestMsgWithContext(ctx, m)
		if !errors.Is(err, nats.ErrNoResponders) {
			break
		}
		if time.Now().Add(wait).After(giveUp) {
			return 0, fmt.Errorf("%w: %w", errNoReply, &Problem{Status: 503, Code: CodeUnavailable, Detail: "no control node serves revocations"})
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("keytrail: revoke: %w", ctx.Err())
		case <-t.C:
		}
	}
	if err != nil {
		return 0, fmt.Errorf("keytrail: revoke: %w", err)
	}
	status, _ := strconv.Atoi(reply.Header.Get("Keytrail-Status"))
	if status >= 400 || status == 0 {
		return 0, problemOf(max(status, 500), reply.Data)
	}
	var out Result
	if err := json.Unmarshal(reply.Data, &out); err != nil {
		return 0, fmt.Errorf("keytrail: revoke: reply is not JSON: %w", err)
	}
	return out.Seq, nil
}
