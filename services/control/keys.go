package control

import (
	"context"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

// MaxGrace bounds how long a rotated key keeps working.
const MaxGrace = 365 * 24 * time.Hour

// KeySpec is what IssueKey needs.
type KeySpec struct {
	User   string
	Name   string
	Scopes []string
	// ExpiresAt or TTL (from now), not both; neither means no expiry.
	ExpiresAt *time.Time
	TTL       time.Duration
	NotBefore *time.Time
	RateLimit *events.RateLimit
	Metadata  map[string]string
	// Policies are the ids of the tenant's policies the key references.
	Policies []string
}

// KeyPatch is what UpdateKey changes; nil fields stay as they are.
type KeyPatch struct {
	Name      *string
	Scopes    *[]string
	ExpiresAt *time.Time
	RateLimit *events.RateLimit
	Metadata  *map[string]string
	Policies  *[]string
}

func keyVersion(k projections.Key) uint64 { return k.Version }

func checkKeyID(tenant, id string) error {
	if err := checkTenantID(tenant); err != nil {
		return err
	}
	if !events.ValidKeyID(id) {
		return errorf(CodeInvalidArgument, "key id must be key_ followed by a ULID")
	}
	return nil
}

// userScope reads the sequence of the last event under a user and their
// keys. Read it before loading what a decision rests on. Every change to a
// user and every key issue or rotation appends under this scope: the server
// lets one append at a time check a given scope, so a key is never issued
// while its user is being disabled (on R3 a scope does not see another
// append in flight unless that one checks the same scope).
func (s *Service) userScope(ctx context.Context, tenant, user string) (*store.Scope, error) {
	filter, err := events.UserScopeFilter(tenant, user)
	if err != nil {
		return nil, errorf(CodeInvalidArgument, "%v", err)
	}
	seq, err := s.cfg.Store.LastSeq(ctx, filter)
	if err != nil {
		return nil, err
	}
	return &store.Scope{Filter: filter, Seq: seq}, nil
}

// requireActive checks what issuing a key for user of tenant needs: both
// exist and are active.
func (s *Service) requireActive(ctx context.Context, tenant, user string) error {
	t, err := load[projections.Tenant](ctx, s.cfg.Store, tenant, events.TenantAggregate(tenant))
	if err != nil {
		return err
	}
	switch {
	case !t.State.Exists():
		return errorf(CodeNotFound, "no tenant %s", tenant)
	case t.State.Status != projections.TenantActive:
		return errorf(CodeFailedPrecondition, "tenant %s is suspended", tenant)
	}
	u, err := load[projections.User](ctx, s.cfg.Store, tenant, events.UserAggregate(user))
	if err != nil {
		return err
	}
	switch {
	case !u.State.Exists():
		return errorf(CodeFailedPrecondition, "user %s does not exist", user)
	case u.State.Status != projections.UserActive:
		return errorf(CodeFailedPrecondition, "user %s is %s", user, u.State.Status)
	}
	return nil
}

// IssueKey issues a key and returns it with its secret: the only time the
// secret is ever available. A retried request (same command id) returns the
// key it issued the first time, with Replayed set and no secret.
func (s *Service) IssueKey(ctx context.Context, meta Meta, tenant string, spec KeySpec) (projections.Key, secret.Secret, Result, error) {
	var (
		key projections.Key
		sec secret.Secret
		res Result
	)
	idempotent, err := s.normalize(&meta)
	if err != nil {
		return key, sec, res, err
	}
	if err := checkUserID(tenant, spec.User); err != nil {
		return key, sec, res, err
	}
	now := s.cfg.Now().UTC()
	expires, err := expiry(spec.ExpiresAt, spec.TTL, now)
	if err != nil {
		return key, sec, res, err
	}
	id, err := s.newID(idempotent, tenant, meta.CommandID, "key", now)
	if err != nil {
		return key, sec, res, err
	}
	keyID := events.KeyIDPrefix + id
	if sec, err = secret.Generate(s.cfg.SecretPrefix, s.cfg.Rand); err != nil {
		return key, sec, res, err
	}
	payload := events.KeyIssuedV1{Name: spec.Name, SecretHash: sec.Hash(), Hint: sec.Hint(), Scopes: spec.Scopes,
		NotBefore: utcPtr(spec.NotBefore), ExpiresAt: expires, RateLimit: spec.RateLimit, Metadata: spec.Metadata, Policies: spec.Policies}
	if err := checkPayload(payload); err != nil {
		return key, secret.Secret{}, res, err
	}
	agg := events.KeyAggregate(spec.User, keyID)
	subject, _ := events.Subject(tenant, agg)
	err = s.run(ctx, &meta, false, func(ctx context.Context, now time.Time) error {
		scope, err := s.userScope(ctx, tenant, spec.User)
		if err != nil {
			return err
		}
		l, err := load[projections.Key](ctx, s.cfg.Store, tenant, agg)
		if err != nil {
			return err
		}
		if recs := l.recorded(meta.CommandID); len(recs) > 0 {
			key, res = l.State, Result{Seq: lastSeq(recs), Replayed: true}
			return nil
		}
		if l.State.Exists() {
			return errorf(CodeConflict, "key %s exists", keyID)
		}
		if err := s.requireActive(ctx, tenant, spec.User); err != nil {
			return err
		}
		if err := s.checkKeyPolicies(ctx, &meta, tenant, spec.Policies, nil, now, now, expires); err != nil {
			return err
		}
		e, err := s.event(&meta, now, tenant, agg, payload)
		if err != nil {
			return err
		}
		recs, err := s.append(ctx, &meta, scope, store.Write{Expect: l.Head, Events: []events.Event{e}})
		if err != nil {
			return err
		}
		key, res = applied(l.State, recs, subject), Result{Seq: lastSeq(recs), Replayed: recs[0].ID != e.ID}
		return nil
	})
	if err != nil || res.Replayed {
		sec = secret.Secret{}
	}
	return key, sec, res, err
}

// expiry resolves expires_at or ttl against now.
func expiry(at *time.Time, ttl time.Duration, now time.Time) (*time.Time, error) {
	switch {
	case at != nil && ttl != 0:
		return nil, errorf(CodeInvalidArgument, "give expires_at or ttl, not both")
	case ttl < 0:
		return nil, errorf(CodeInvalidArgument, "ttl must be positive")
	case ttl > 0:
		t := now.Add(ttl)
		return &t, nil
	case at != nil && !at.After(now):
		return nil, errorf(CodeInvalidArgument, "expires_at must be in the future")
	}
	return utcPtr(at), nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// keyCommand runs a single-aggregate command on an existing key.
func (s *Service) keyCommand(ctx context.Context, meta Meta, tenant, keyID string, version *uint64,
	decide func(k projections.Key, now time.Time) (events.Payload, error)) (projections.Key, Result, error) {
	return s.checkedKeyCommand(ctx, meta, tenant, keyID, version, decide, nil)
}

// checkedKeyCommand is keyCommand with a check of the payload against more
// of the log before it is appended.
func (s *Service) checkedKeyCommand(ctx context.Context, meta Meta, tenant, keyID string, version *uint64,
	decide func(k projections.Key, now time.Time) (events.Payload, error), check func(ctx context.Context, p events.Payload) error) (projections.Key, Result, error) {
	if err := checkKeyID(tenant, keyID); err != nil {
		return projections.Key{}, Result{}, err
	}
	user, found, err := s.cfg.Store.FindKey(ctx, tenant, keyID)
	if err != nil {
		return projections.Key{}, Result{}, mapStoreError(err)
	}
	if !found {
		return projections.Key{}, Result{}, errorf(CodeNotFound, "no key %s", keyID)
	}
	return transition(ctx, s, meta, step[projections.Key]{tenant: tenant, agg: events.KeyAggregate(user, keyID),
		pinned: version != nil, version: keyVersion, check: check, decide: func(k projections.Key, now time.Time) (events.Payload, error) {
			if !k.Exists() {
				return nil, errorf(CodeNotFound, "no key %s", keyID)
			}
			if err := ifMatch(version, k.Version); err != nil {
				return nil, err
			}
			return decide(k, now)
		}})
}

func notRevoked(k projections.Key) error {
	if k.Status == projections.KeyRevoked {
		return errorf(CodeFailedPrecondition, "key %s is revoked, which is final", k.ID)
	}
	return nil
}

// SuspendKey suspends a key (SUSPENDED) until it is resumed.
func (s *Service) SuspendKey(ctx context.Context, meta Meta, tenant, keyID string, version *uint64) (projections.Key, Result, error) {
	return s.keyCommand(ctx, meta, tenant, keyID, version, func(k projections.Key, _ time.Time) (events.Payload, error) {
		if err := notRevoked(k); err != nil || k.Status == projections.KeySuspended {
			return nil, err
		}
		return events.KeySuspendedV1{}, nil
	})
}

// ResumeKey resumes a suspended key.
func (s *Service) ResumeKey(ctx context.Context, meta Meta, tenant, keyID string, version *uint64) (projections.Key, Result, error) {
	return s.keyCommand(ctx, meta, tenant, keyID, version, func(k projections.Key, _ time.Time) (events.Payload, error) {
		if err := notRevoked(k); err != nil || k.Status == projections.KeyActive {
			return nil, err
		}
		return events.KeyResumedV1{}, nil
	})
}

// RevokeKey revokes a key for good. Revoking a revoked key changes nothing.
func (s *Service) RevokeKey(ctx context.Context, meta Meta, tenant, keyID string, version *uint64) (projections.Key, Result, error) {
	return s.keyCommand(ctx, meta, tenant, keyID, version, func(k projections.Key, _ time.Time) (events.Payload, error) {
		if k.Status == projections.KeyRevoked {
			return nil, nil
		}
		return events.KeyRevokedV1{}, nil
	})
}

// UpdateKey changes a key's name, scopes, expiry, rate limit or metadata.
func (s *Service) UpdateKey(ctx context.Context, meta Meta, tenant, keyID string, patch KeyPatch, version *uint64) (projections.Key, Result, error) {
	if patch == (KeyPatch{}) {
		return projections.Key{}, Result{}, errorf(CodeInvalidArgument, "nothing to update")
	}
	var (
		created time.Time
		kept    []string
	)
	check := func(ctx context.Context, p events.Payload) error {
		if patch.Policies == nil && patch.ExpiresAt == nil {
			return nil
		}
		u := p.(events.KeyUpdatedV1)
		return s.checkKeyPolicies(ctx, &meta, tenant, u.Policies, kept, created, s.cfg.Now(), u.ExpiresAt)
	}
	return s.checkedKeyCommand(ctx, meta, tenant, keyID, version, func(k projections.Key, now time.Time) (events.Payload, error) {
		if err := notRevoked(k); err != nil {
			return nil, err
		}
		created, kept = k.CreatedAt, k.Policies
		p := events.KeyUpdatedV1{Name: k.Name, Scopes: k.Scopes, ExpiresAt: k.ExpiresAt, RateLimit: k.RateLimit, Metadata: k.Metadata, Policies: k.Policies}
		if patch.Policies != nil {
			p.Policies = *patch.Policies
		}
		if patch.Name != nil {
			p.Name = *patch.Name
		}
		if patch.Scopes != nil {
			p.Scopes = *patch.Scopes
		}
		if patch.ExpiresAt != nil {
			exp, err := expiry(patch.ExpiresAt, 0, now)
			if err != nil {
				return nil, err
			}
			if k.NotBefore != nil && !exp.After(*k.NotBefore) {
				return nil, errorf(CodeInvalidArgument, "expires_at must be after not_before")
			}
			p.ExpiresAt = exp
		}
		if patch.RateLimit != nil {
			p.RateLimit = patch.RateLimit
		}
		if patch.Metadata != nil {
			p.Metadata = *patch.Metadata
		}
		return p, nil
	}, check)
}

// Rotation is what RotateKey did.
type Rotation struct {
	New      projections.Key
	Secret   secret.Secret // zero on a replayed request
	Previous projections.Key
}

// RotateKey replaces a key by a new one with the same user, name, scopes,
// limits, metadata, not-before and expiry, in one atomic append; the old key
// keeps working for grace, never past its own expiry.
func (s *Service) RotateKey(ctx context.Context, meta Meta, tenant, keyID string, grace time.Duration, version *uint64) (Rotation, Result, error) {
	var (
		rot Rotation
		res Result
	)
	if err := checkKeyID(tenant, keyID); err != nil {
		return rot, res, err
	}
	if grace < 0 || grace > MaxGrace {
		return rot, res, errorf(CodeInvalidArgument, "grace must be between 0 and %s", MaxGrace)
	}
	idempotent, err := s.normalize(&meta)
	if err != nil {
		return rot, res, err
	}
	user, found, err := s.cfg.Store.FindKey(ctx, tenant, keyID)
	if err != nil {
		return rot, res, mapStoreError(err)
	}
	if !found {
		return rot, res, errorf(CodeNotFound, "no key %s", keyID)
	}
	now := s.cfg.Now().UTC()
	id, err := s.newID(idempotent, tenant, meta.CommandID, "rotate:"+keyID, now)
	if err != nil {
		return rot, res, err
	}
	newID := events.KeyIDPrefix + id
	sec, err := secret.Generate(s.cfg.SecretPrefix, s.cfg.Rand)
	if err != nil {
		return rot, res, err
	}
	oldAgg, newAgg := events.KeyAggregate(user, keyID), events.KeyAggregate(user, newID)
	oldSubject, _ := events.Subject(tenant, oldAgg)
	newSubject, _ := events.Subject(tenant, newAgg)
	err = s.run(ctx, &meta, version != nil, func(ctx context.Context, now time.Time) error {
		scope, err := s.userScope(ctx, tenant, user)
		if err != nil {
			return err
		}
		old, err := load[projections.Key](ctx, s.cfg.Store, tenant, oldAgg)
		if err != nil {
			return err
		}
		if recs := old.recorded(meta.CommandID); len(recs) > 0 {
			rotated, ok := recs[0].Data.(events.KeyRotatedV1)
			if !ok {
				return errorf(CodeConflict, "this idempotency key was used for another request")
			}
			successor, err := load[projections.Key](ctx, s.cfg.Store, tenant, events.KeyAggregate(user, rotated.Successor))
			if err != nil {
				return err
			}
			rot, res = Rotation{New: successor.State, Previous: old.State}, Result{Seq: lastSeq(recs), Replayed: true}
			return nil
		}
		k := old.State
		switch {
		case !k.Exists():
			return errorf(CodeNotFound, "no key %s", keyID)
		case k.Status == projections.KeyRevoked:
			return notRevoked(k)
		case k.RotatedTo != "":
			return errorf(CodeFailedPrecondition, "key %s was rotated to %s already", keyID, k.RotatedTo)
		case k.ExpiresAt != nil && !k.ExpiresAt.After(now):
			return errorf(CodeFailedPrecondition, "key %s has expired", keyID)
		}
		// Expired by a policy's lifetime bound is expired too: a rotation
		// does not revive a key (its successor's bound counts from its own
		// issue: rotating within the bound is how a key complies with it).
		if end, by, ok, err := s.policyEnd(ctx, tenant, k.Policies, k.CreatedAt); err != nil {
			return err
		} else if ok && !end.After(now) {
			return errorf(CodeFailedPrecondition, "key %s has expired: policy %s allows keys %s after their issue", keyID, by, events.FormatTTL(end.Sub(k.CreatedAt)))
		}
		if err := ifMatch(version, k.Version); err != nil {
			return err
		}
		if err := s.requireActive(ctx, tenant, user); err != nil {
			return err
		}
		graceUntil := now.Add(grace)
		if k.ExpiresAt != nil && k.ExpiresAt.Before(graceUntil) {
			graceUntil = *k.ExpiresAt // a rotation never extends a key's life
		}
		issued, err := s.event(&meta, now, tenant, newAgg, events.KeyIssuedV1{
			Name: k.Name, SecretHash: sec.Hash(), Hint: sec.Hint(), Scopes: k.Scopes, NotBefore: k.NotBefore,
			ExpiresAt: k.ExpiresAt, RateLimit: k.RateLimit, Metadata: k.Metadata, RotatedFrom: keyID, Policies: k.Policies})
		if err != nil {
			return err
		}
		rotated, err := s.event(&meta, now, tenant, oldAgg, events.KeyRotatedV1{Successor: newID, GraceUntil: graceUntil})
		if err != nil {
			return err
		}
		recs, err := s.append(ctx, &meta, scope,
			store.Write{Events: []events.Event{issued}},
			store.Write{Expect: old.Head, Events: []events.Event{rotated}})
		if err != nil {
			return err
		}
		rot = Rotation{New: applied(projections.Key{}, recs, newSubject), Secret: sec, Previous: applied(k, recs, oldSubject)}
		res = Result{Seq: lastSeq(recs), Replayed: recs[0].ID != issued.ID}
		return nil
	})
	if err != nil || res.Replayed {
		rot.Secret = secret.Secret{}
	}
	return rot, res, err
}

// Key returns a key's current state.
func (s *Service) Key(ctx context.Context, tenant, keyID string) (projections.Key, error) {
	if err := checkKeyID(tenant, keyID); err != nil {
		return projections.Key{}, err
	}
	user, found, err := s.cfg.Store.FindKey(ctx, tenant, keyID)
	if err != nil {
		return projections.Key{}, mapStoreError(err)
	}
	if !found {
		return projections.Key{}, errorf(CodeNotFound, "no key %s", keyID)
	}
	l, err := load[projections.Key](ctx, s.cfg.Store, tenant, events.KeyAggregate(user, keyID))
	if err != nil {
		return projections.Key{}, mapStoreError(err)
	}
	return l.State, nil
}
