package control

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/egress"
)

// Config holds a Service's dependencies.
type Config struct {
	Store store.Store
	// Now is the clock; events carry its time. Defaults to time.Now.
	Now func() time.Time
	// Rand is the randomness for secrets and ids. Defaults to crypto/rand.
	Rand io.Reader
	// SecretPrefix prefixes issued secrets. Defaults to secret.DefaultPrefix.
	SecretPrefix string
	// Egress, when set, is where APIs' upstreams may point (checked when an
	// API is created or its upstreams change).
	Egress *egress.Policy
	// Webhooks, when set, keeps webhook endpoints' signing secrets; without
	// it endpoints cannot be created.
	Webhooks WebhookSecrets
	// Attempts bounds how often a command decides again after a conflict it
	// did not ask for (no If-Match), backing off between attempts, when its
	// context has no deadline (default 100); with a deadline it decides again
	// until the deadline.
	Attempts int
}

// Service runs commands.
type Service struct{ cfg Config }

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("control: a store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.SecretPrefix == "" {
		cfg.SecretPrefix = secret.DefaultPrefix
	}
	if !secret.ValidPrefix(cfg.SecretPrefix) {
		return nil, fmt.Errorf("control: invalid secret prefix %q", cfg.SecretPrefix)
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 100
	}
	return &Service{cfg: cfg}, nil
}

// Meta says who asks, why, and which request this is.
type Meta struct {
	// Actor is recorded on every event: "root" or the admin key's id.
	Actor string
	// Reason is the caller's why, recorded on every event.
	Reason string
	// CommandID makes the command idempotent (from Idempotency-Key); a
	// random one is used when it is empty.
	CommandID string
	// CorrelationID ties the events to a request.
	CorrelationID string
	// IfMatch, when set, is the version the caller expects the aggregate
	// to be at (If-Match): a command on another version is refused with a
	// conflict, and a conflict is not decided again.
	IfMatch *uint64
	// Plan, when set, makes the command a dry run: it is decided as ever,
	// and what it would append is recorded here instead of appended.
	Plan *Plan
	// Confine, when set, holds the command within what the caller's key
	// holds (a tenant admin's; nil for the root key): a policy it defines,
	// changes or has a key reference may grant only scopes it holds,
	// checked against the policy's state the command reads from the log.
	Confine *Confinement
}

// Confinement is what a tenant admin's key holds: its effective scopes;
// and AsOf, the read model's sequence when its write was judged against
// the keys it changes (adminhttp's guard; 0: not judged): a policy change
// is appended only if no key of the tenant changed since.
type Confinement struct {
	KeyID  string
	Scopes []string
	AsOf   uint64
}

// grants checks that the caller may grant scopes (what a policy holds).
func (c *Confinement) grants(what string, scopes []string) error {
	if c == nil {
		return nil
	}
	for _, sc := range scopes {
		if !slices.Contains(c.Scopes, sc) {
			return errorf(CodePermissionDenied, "%s grants %q, which the key making this request (%s) does not hold; a key can grant only scopes it holds",
				what, sc, c.KeyID)
		}
	}
	return nil
}

// Plan is what a dry run would have appended.
type Plan struct {
	// Events are the events, in order; After is the highest sequence the
	// decision read (an aggregate's or a scope's): a read model that has
	// applied it saw what the command saw.
	Events []events.Event
	After  uint64
}

// append appends writes under scope — or, for a dry run, records them in
// meta's plan and answers as if they had been appended at sequence 0.
func (s *Service) append(ctx context.Context, meta *Meta, scope *store.Scope, writes ...store.Write) ([]events.Recorded, error) {
	if meta.Plan == nil {
		return s.cfg.Store.AppendAtomic(ctx, scope, writes...)
	}
	p := meta.Plan
	p.Events = p.Events[:0]
	if scope != nil {
		p.After = max(p.After, scope.Seq)
	}
	var recs []events.Recorded
	for _, w := range writes {
		p.After = max(p.After, w.Expect.Seq)
		for _, e := range w.Events {
			p.Events = append(p.Events, e)
			subject, _ := events.SubjectOf(&e)
			recs = append(recs, events.Recorded{Subject: subject, Event: e})
		}
	}
	return recs, nil
}

// Result is what a command did: the sequence of the last event it appended
// (or, when it changed nothing, the aggregate's version), and whether it was
// a retry answered from what an earlier identical request recorded.
type Result struct {
	Seq      uint64
	Replayed bool
	// Unchanged: nothing was appended, the object was already as asked.
	Unchanged bool
}

// run executes one command: prepare it (once: ids and secrets must not
// change between attempts), then decide and append until the append goes
// through or the decision fails. A conflict the caller did not ask to
// detect is decided again on fresh state until ctx's deadline (or, without
// one, Attempts), then answered as unavailable, never as a conflict;
// pinned commands (If-Match) get a conflict at once.
func (s *Service) run(ctx context.Context, meta *Meta, pinned bool, attempt func(ctx context.Context, now time.Time) error) error {
	now := s.cfg.Now().UTC()
	_, deadline := ctx.Deadline()
	for i := 0; ; i++ {
		err := attempt(ctx, now)
		if !errors.Is(err, store.ErrConflict) {
			return mapStoreError(err)
		}
		if pinned || meta.IfMatch != nil {
			return errorf(CodeConflict, "the object changed while the request was decided; reload and retry")
		}
		if !deadline && i+1 >= s.cfg.Attempts {
			return errorf(CodeUnavailable, "the object kept changing while the request was decided; retry")
		}
		// Back off: on a cluster the competing append may still be in flight
		// (the server refuses a second one on the same scope until it lands),
		// and a replica answering our reads may lag a moment.
		wait := time.NewTimer(backoff(i))
		select {
		case <-ctx.Done():
			wait.Stop()
			return mapStoreError(ctx.Err())
		case <-wait.C:
		}
	}
}

// backoff is 1, 2, 4 … 64 ms, with up to half again of jitter so that two
// retrying commands do not keep meeting.
func backoff(attempt int) time.Duration {
	d := time.Millisecond << min(attempt, 6)
	var b [1]byte
	rand.Read(b[:])
	return d + d*time.Duration(b[0])/512
}

// normalize checks meta and gives it a command id if it has none. It reports
// whether the caller supplied the id (an idempotent request, whose retries
// must land on the same aggregates).
func (s *Service) normalize(meta *Meta) (idempotent bool, err error) {
	if !events.ValidActor(meta.Actor) {
		return false, errorf(CodeInvalidArgument, "invalid actor")
	}
	if !events.ValidReason(meta.Reason) {
		return false, errorf(CodeInvalidArgument, "reason must be at most %d printable characters", events.MaxReasonLen)
	}
	if meta.CorrelationID != "" && !events.ValidCommandID(meta.CorrelationID) {
		return false, errorf(CodeInvalidArgument, "invalid correlation id")
	}
	if meta.CommandID != "" {
		if !events.ValidCommandID(meta.CommandID) {
			return false, errorf(CodeInvalidArgument, "invalid idempotency key: 1 to %d of A-Z a-z 0-9 _ - :", events.MaxCommandLen)
		}
		return true, nil
	}
	id, err := ulid.New(ulid.Timestamp(s.cfg.Now()), s.cfg.Rand)
	if err != nil {
		return false, fmt.Errorf("control: command id: %w", err)
	}
	meta.CommandID = id.String()
	return false, nil
}

// newID returns a ULID for a new aggregate. For an idempotent request it is
// derived from the tenant, the command id and what the id is for, so that a
// retry lands on the same aggregate (and the store answers it with what was
// recorded); otherwise it is random and time-ordered.
func (s *Service) newID(idempotent bool, tenant, cmd, purpose string, now time.Time) (string, error) {
	if idempotent {
		sum := sha256.Sum256([]byte("keytrail/id/v1\x00" + purpose + "\x00" + tenant + "\x00" + cmd))
		var id ulid.ULID
		copy(id[:], sum[:16])
		return id.String(), nil
	}
	id, err := ulid.New(ulid.Timestamp(now), s.cfg.Rand)
	if err != nil {
		return "", fmt.Errorf("control: id: %w", err)
	}
	return id.String(), nil
}

// mapStoreError keeps domain errors and turns the rest into internal or
// unavailable ones, whose text does not reach the caller.
func mapStoreError(err error) error {
	var de *Error
	switch {
	case err == nil, errors.As(err, &de):
		return err
	case errors.Is(err, store.ErrInvalid):
		return &Error{Code: CodeInvalidArgument, Message: strings.TrimPrefix(err.Error(), "store: invalid append: ")}
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrRefused),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &Error{Code: CodeUnavailable, Message: "the event log did not answer in time"}
	}
	return fmt.Errorf("control: %w", err)
}

// event builds an event of meta's command at now.
func (s *Service) event(meta *Meta, now time.Time, tenant string, agg events.Aggregate, p events.Payload) (events.Event, error) {
	id, err := ulid.New(ulid.Timestamp(now), s.cfg.Rand)
	if err != nil {
		return events.Event{}, fmt.Errorf("control: event id: %w", err)
	}
	return events.Event{
		ID: id.String(), Type: p.EventType(), Tenant: tenant, Aggregate: agg, Actor: meta.Actor, Reason: meta.Reason,
		OccurredAt: now, CommandID: meta.CommandID, CorrelationID: meta.CorrelationID, Data: p,
	}, nil
}

// checkPayload refuses a payload the codec would refuse, in its words.
func checkPayload(p events.Payload) error {
	if err := events.ValidatePayload(p); err != nil {
		return errorf(CodeInvalidArgument, "%v", err)
	}
	return nil
}

// loaded is an aggregate's state, its history and the head to append after.
type loaded[T any] struct {
	State   T
	Head    store.Head
	History []events.Recorded
}

// recorded returns the events of the history that command cmd appended: a
// retry of an earlier request, answered without deciding again.
func (l loaded[T]) recorded(cmd string) []events.Recorded {
	var out []events.Recorded
	for _, r := range l.History {
		if r.CommandID == cmd {
			out = append(out, r)
		}
	}
	return out
}

func load[T interface {
	Apply(events.Recorded) (T, error)
}](ctx context.Context, st store.Store, tenant string, agg events.Aggregate) (loaded[T], error) {
	h, err := st.Load(ctx, tenant, agg)
	if err != nil {
		return loaded[T]{}, err
	}
	state, _ := projections.Fold[T](h.Events)
	return loaded[T]{State: state, Head: h.Head, History: h.Events}, nil
}

// applied folds what an append recorded into the state it started from.
func applied[T interface {
	Apply(events.Recorded) (T, error)
}](state T, recs []events.Recorded, subject string) T {
	for _, r := range recs {
		if r.Subject == subject {
			state, _ = state.Apply(r)
		}
	}
	return state
}

func lastSeq(recs []events.Recorded) uint64 { return recs[len(recs)-1].Seq }
