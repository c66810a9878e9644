// Package store is Keytrail's event store: append events to an aggregate with
// optimistic concurrency and idempotency, load an aggregate, and read or tail
// the whole log in order. The contract is the Store interface; JetStream is
// the implementation Keytrail runs on and Memory is a fake for fast tests.
// Both must pass the conformance suite in store/storetest.
//
// The store computes the hash chain: every appended event carries the hash of
// the previous event of its aggregate.
package store

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/keytrail/keytrail/events"
)

// MaxAppend bounds how many events one Append may write atomically.
const MaxAppend = 100

// Errors of the store.
var (
	// ErrConflict: the aggregate's last event is no longer the one the
	// appender expected. Reload and decide again. A *ConflictError wraps it.
	ErrConflict = errors.New("store: conflict")
	// ErrInvalid: the events given to Append cannot be appended as given
	// (none, too many, several aggregates, or an event that does not encode).
	ErrInvalid = errors.New("store: invalid append")
	// ErrClosed: the subscription was closed.
	ErrClosed = errors.New("store: subscription closed")
	// ErrUnlinked: a well-formed event whose prev_hash is not the hash of its
	// aggregate's previous valid event, e.g. one published to an event
	// subject by something other than a control node.
	ErrUnlinked = errors.New("store: event does not link to its aggregate's previous event")
)

// ConflictError says which aggregate conflicted, what the appender expected
// and what the store found when it looked (on a cluster, possibly a moment
// behind the leader).
type ConflictError struct {
	Subject  string
	Expected uint64
	Actual   uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("store: conflict on %s: expected last sequence %d, found %d", e.Subject, e.Expected, e.Actual)
}

// Unwrap lets errors.Is(err, ErrConflict) match.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Head is the position of an aggregate's last event. The zero Head means the
// aggregate has no events yet.
type Head struct {
	Seq  uint64
	Hash events.Hash
}

// History is an aggregate's events in order and its head.
type History struct {
	Subject string
	Events  []events.Recorded
	// Head is what the next Append must expect: the sequence of the last
	// message on the subject (valid or not, as the server checks it) and the
	// hash of the last valid event (the chain skips what did not decode).
	Head Head
	// Quarantined lists messages on the subject that are not valid events.
	// They are never applied; the rest of the history loads around them.
	Quarantined []Quarantined
}

// Quarantined is a message that is not a valid event.
type Quarantined struct {
	Seq uint64
	Err error
}

// Write is one aggregate's part of an atomic append.
type Write struct {
	Expect Head
	Events []events.Event
}

// Scope is an optimistic expectation over a subject filter, such as
// events.UserScopeFilter (a user and all their keys): a check made on one
// aggregate stays true while another is appended to.
type Scope struct {
	Filter string
	// Seq is the filter's last sequence (LastSeq), read before the
	// aggregates the decision rests on were loaded.
	Seq uint64
}

// SubscribeOptions choose where a subscription starts and what it sees.
type SubscribeOptions struct {
	// From is the first stream sequence to deliver; 0 and 1 both mean the
	// beginning of the stream.
	From uint64
	// Filters are subject filters (events.AllSubjects when empty), e.g. one
	// events.TenantFilter per tenant a gateway serves.
	Filters []string
}

// Delivery is one message read from the log, in stream order.
type Delivery struct {
	// Seq is the stream sequence: the checkpoint to resume after.
	Seq uint64
	// Subject is where the message was stored.
	Subject string
	// Event is the decoded event, valid when Err is nil.
	Event events.Recorded
	// Err is non-nil when the message is not a valid event: it did not decode
	// (*events.DecodeError) or it sits on a subject that is not its
	// aggregate's. The reader reports it and goes on with the next message.
	Err error
	// Raw is the SHA-256 of the stored bytes, valid or not: what the
	// global chain of checkpoints folds (docs/signing.md).
	Raw events.Hash
	// Pending is how many messages matching the filters follow this one, as
	// the server last said; 0 means the reader has caught up (on a
	// replicated stream, at least to the leader's last message when the
	// subscription began).
	Pending uint64
}

// CaughtUp reports whether nothing was pending after this delivery.
func (d Delivery) CaughtUp() bool { return d.Pending == 0 }

// Subscription reads the log in order, then tails it.
type Subscription interface {
	// Next blocks until the next message or until ctx ends.
	Next(ctx context.Context) (Delivery, error)
	// Close stops the subscription; Next then returns ErrClosed.
	Close() error
}

// Store is the event store contract.
type Store interface {
	// Append atomically appends evs, which must all belong to one aggregate,
	// if that aggregate's last event is still expect. It fills in each
	// event's PrevHash and returns the events as recorded. If the command id
	// of evs was already appended to the aggregate (a retry), it appends
	// nothing and returns the events recorded the first time. Otherwise a
	// stale expect fails with a *ConflictError and appends nothing.
	Append(ctx context.Context, expect Head, evs ...events.Event) ([]events.Recorded, error)
	// AppendAtomic appends the events of one command to several aggregates,
	// all or none: each Write's aggregate must still be at its Expect head,
	// and, with a scope, nothing may have been appended under the scope's
	// filter since its Seq (the first write's own head is then vouched for by
	// the scope, so read the scope before loading the aggregates). Retries
	// of the command return what was recorded the first time.
	AppendAtomic(ctx context.Context, scope *Scope, writes ...Write) ([]events.Recorded, error)
	// Load returns every event of one aggregate, in order, checking the hash
	// chain. Messages that are not valid events or do not link are reported
	// in History.Quarantined and left out of the chain.
	Load(ctx context.Context, tenant string, agg events.Aggregate) (History, error)
	// Subscribe starts an ordered reader of the log.
	Subscribe(ctx context.Context, opts SubscribeOptions) (Subscription, error)
	// Get returns the event at a stream sequence (read from the stream
	// leader: current), or an error if that message is not a valid event.
	Get(ctx context.Context, seq uint64) (events.Recorded, error)
	// LoadAll returns every valid event under a subject filter, in order (for
	// small, cross-aggregate sets such as every API of every tenant).
	LoadAll(ctx context.Context, filter string) ([]events.Recorded, error)
	// FindKey returns the user a key belongs to (part of its subject), or
	// found false if the tenant has no such key.
	FindKey(ctx context.Context, tenant, keyID string) (user string, found bool, err error)
	// LastSeq returns the sequence of the last message matching filter
	// (events.AllSubjects when empty), 0 if none.
	LastSeq(ctx context.Context, filter string) (uint64, error)
}

// prepared is an atomic append, validated and encoded.
type prepared struct {
	cmd      string
	recs     []events.Recorded // every event, in append order
	data     [][]byte          // their encodings
	expect   []uint64          // per event: the subject's expected last sequence, on the first event of each write
	first    []bool            // per event: first of its write
	msgIndex []int             // per event: index within its write (for the Msg-Id)
	writes   []Write
}

// prepare validates an atomic append and encodes it: one command, distinct
// aggregates, each write chained to its expected head, every subject inside
// the scope. The implementations share it so that they agree on what is valid.
func prepare(scope *Scope, writes []Write, key ed25519.PrivateKey) (*prepared, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if len(writes) == 0 {
		return nil, invalid("nothing to append")
	}
	p := &prepared{writes: writes}
	subjects := map[string]bool{}
	for w, wr := range writes {
		if len(wr.Events) == 0 {
			return nil, invalid("write %d has no events", w)
		}
		first := &wr.Events[0]
		if w == 0 {
			p.cmd = first.CommandID
		}
		subject, err := events.SubjectOf(first)
		if err != nil {
			return nil, invalid("%v", err)
		}
		if subjects[subject] {
			return nil, invalid("two writes to %s", subject)
		}
		subjects[subject] = true
		if scope != nil && !subjectMatches(scope.Filter, subject) {
			return nil, invalid("%s is outside the scope %s", subject, scope.Filter)
		}
		if scope != nil && w == 0 && wr.Expect.Seq > scope.Seq {
			return nil, invalid("head %d is past the scope's %d: read the scope first", wr.Expect.Seq, scope.Seq)
		}
		prev := wr.Expect.Hash
		for i := range wr.Events {
			e := wr.Events[i]
			if e.Tenant != first.Tenant || e.Aggregate != first.Aggregate {
				return nil, invalid("events of several aggregates in one write")
			}
			if e.CommandID != p.cmd {
				return nil, invalid("events of several commands in one append")
			}
			e.PrevHash = prev
			e.Version = events.WrittenVersion(e.Type) // the Keytrail-Version header says what the payload is
			b, err := events.Encode(&e)
			if err != nil {
				return nil, invalid("%v", err)
			}
			if key != nil {
				if b, err = events.Sign(subject, b, key); err != nil {
					return nil, invalid("%v", err)
				}
			}
			prev = events.HashOf(b)
			p.recs = append(p.recs, events.Recorded{Subject: subject, Hash: prev, Event: e})
			p.data = append(p.data, b)
			p.expect = append(p.expect, wr.Expect.Seq)
			p.first = append(p.first, i == 0)
			p.msgIndex = append(p.msgIndex, i)
		}
	}
	if len(p.recs) > MaxAppend {
		return nil, invalid("%d events (at most %d)", len(p.recs), MaxAppend)
	}
	return p, nil
}

// msgID is the Nats-Msg-Id of event i.
func (p *prepared) msgID(i int) string { return events.MsgID(p.recs[i].Subject, p.cmd, p.msgIndex[i]) }

// resolve tells a retry of a command that was appended already (answer with
// what was recorded then) from a real conflict, given a way to load each
// aggregate's history.
func (p *prepared) resolve(ctx context.Context, load func(context.Context, string, events.Aggregate) (History, error), scope *Scope) ([]events.Recorded, error) {
	var out []events.Recorded
	found := 0
	var conflict *ConflictError
	for _, wr := range p.writes {
		first := wr.Events[0]
		h, err := load(ctx, first.Tenant, first.Aggregate)
		if err != nil {
			return nil, fmt.Errorf("store: append conflicted; reload %s: %w", first.Aggregate, err)
		}
		want := p.recs[len(out) : len(out)+len(wr.Events)]
		if got, ok := findCommand(h, p.cmd, want); ok {
			found++
			out = append(out, got...)
			continue
		}
		out = append(out, want...)
		// Name the aggregate that moved, if one did.
		if conflict == nil || (conflict.Actual == conflict.Expected && h.Head.Seq != wr.Expect.Seq) {
			conflict = &ConflictError{Subject: h.Subject, Expected: wr.Expect.Seq, Actual: h.Head.Seq}
		}
	}
	switch {
	case found == len(p.writes):
		return out, nil
	case found > 0:
		return nil, fmt.Errorf("store: command %s is recorded on %d of its %d aggregates", p.cmd, found, len(p.writes))
	case scope != nil && conflict.Actual == conflict.Expected:
		// No aggregate moved: something else under the scope did. Its last
		// sequence is not known here (Actual 0).
		conflict.Subject, conflict.Expected, conflict.Actual = scope.Filter, scope.Seq, 0
	}
	return nil, conflict
}

// rawHash is the hash of a delivery's stored bytes (the event's own when it
// decoded: computed once).
func rawHash(d *Delivery, data []byte) events.Hash {
	if d.Err == nil {
		return d.Event.Hash
	}
	return events.HashOf(data)
}

// decodeAt decodes a stored message and checks it sits on its aggregate's
// subject: an event copied onto another aggregate's subject is refused.
func decodeAt(seq uint64, subject string, data []byte) (events.Recorded, error) {
	return decodeStored(seq, subject, data, false)
}

// decodeStored is decodeAt; with owned, data is the caller's alone (a
// message delivered to a subscription) and a signed event is decoded where
// it lies — its seal's comma made the closing brace for the decoding and
// put back after, so that nothing is copied (the decoded event keeps no
// reference to data).
func decodeStored(seq uint64, subject string, data []byte, owned bool) (events.Recorded, error) {
	cut, seal, err := events.SplitSeal(subject, data)
	if err != nil {
		return events.Recorded{}, err
	}
	unsigned := data
	switch {
	case seal.Signed() && owned:
		data[cut] = '}'
		unsigned = data[:cut+1]
	case seal.Signed():
		unsigned = append(data[:cut:cut], '}')
	}
	e, err := events.Decode(unsigned)
	if seal.Signed() && owned {
		data[cut] = ','
	}
	if err != nil {
		return events.Recorded{}, err
	}
	if !events.IsSubjectOf(&e, subject) {
		return events.Recorded{}, &events.DecodeError{Kind: events.ErrMalformed,
			Detail: fmt.Sprintf("event of %s %s stored on subject %s", e.Tenant, e.Aggregate, subject)}
	}
	return events.Recorded{Seq: seq, Subject: subject, Hash: events.HashOf(data), Event: e, Seal: seal}, nil
}

// Verifier judges an event a store reads as the node's readers do (signed
// history, docs/signing.md): an error wrapping ErrUnavailable means it
// cannot judge now; any other, that the event does not count.
type Verifier func(r *events.Recorded) error

// add records one stored message of the aggregate's subject. A message that
// does not decode, that verify refuses, or that does not link to the last
// valid event, is quarantined (the chain goes on from the last valid one).
func (h *History) add(seq uint64, subject string, data []byte, verify Verifier) error {
	h.Head.Seq = seq
	r, err := decodeAt(seq, subject, data)
	if err == nil && verify != nil {
		if err = verify(&r); errors.Is(err, ErrUnavailable) {
			return err
		}
	}
	if err == nil && r.PrevHash != h.Head.Hash {
		err = fmt.Errorf("%w: seq %d carries prev_hash %s, the previous event's hash is %s", ErrUnlinked, seq, r.PrevHash, h.Head.Hash)
	}
	if err != nil {
		h.Quarantined = append(h.Quarantined, Quarantined{Seq: seq, Err: err})
		return nil
	}
	h.Events = append(h.Events, r)
	h.Head.Hash = r.Hash
	return nil
}

// findCommand returns the events of a history that carry commandID, if they
// match what the retry tries to append (same count and types).
func findCommand(h History, commandID string, want []events.Recorded) ([]events.Recorded, bool) {
	var got []events.Recorded
	for _, r := range h.Events {
		if r.CommandID == commandID {
			got = append(got, r)
		}
	}
	if len(got) != len(want) {
		return nil, false
	}
	for i := range got {
		if got[i].Type != want[i].Type {
			return nil, false
		}
	}
	return got, true
}

// subjectMatches implements NATS subject matching of a filter with '*' and
// '>' wildcards against a literal subject.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// keyFilter is the subject filter that finds a key whatever its user, and
// whatever its tenant when tenant is "*".
func keyFilter(tenant, keyID string) (string, error) {
	if (tenant != "*" && !events.ValidTenantID(tenant)) || !events.ValidKeyID(keyID) {
		return "", fmt.Errorf("%w: invalid tenant or key id", ErrInvalid)
	}
	return events.SubjectRoot + "." + tenant + ".u.*.k." + keyID, nil
}

// KeyHistory returns every event that bears on a key of user, in stream
// order: its own, its user's, its tenant's and those of every policy it
// ever referenced.
func KeyHistory(ctx context.Context, st Store, tenant, user, keyID string) ([]events.Recorded, error) {
	var all []events.Recorded
	aggs := []events.Aggregate{events.KeyAggregate(user, keyID), events.TenantAggregate(tenant), events.UserAggregate(user)}
	seen := map[string]bool{}
	for i := 0; i < len(aggs); i++ {
		h, err := st.Load(ctx, tenant, aggs[i])
		if err != nil {
			return nil, err
		}
		all = append(all, h.Events...)
		if i > 0 {
			continue
		}
		// Every policy the key ever referenced, each whole: a policy's
		// state at any sequence is the fold of its events.
		for _, r := range h.Events {
			for _, id := range events.KeyPolicies(r.Data) {
				if !seen[id] {
					seen[id] = true
					aggs = append(aggs, events.PolicyAggregate(id))
				}
			}
		}
	}
	slices.SortFunc(all, func(a, b events.Recorded) int { return cmp.Compare(a.Seq, b.Seq) })
	return all, nil
}

// userOfKey reads the user out of a key's subject.
func userOfKey(subject string) (string, bool) {
	_, agg, err := events.ParseSubject(subject)
	if err != nil || agg.Kind != events.KindKey {
		return "", false
	}
	return agg.User, true
}
