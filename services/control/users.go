package control

import (
	"context"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
)

func userVersion(u projections.User) uint64 { return u.Version }

// userScopeFilter is the scope every change to a user appends under (see
// userScope). The ids are checked before it is called.
func userScopeFilter(tenant, user string) string {
	f, _ := events.UserScopeFilter(tenant, user)
	return f
}

func checkUserID(tenant, id string) error {
	if err := checkTenantID(tenant); err != nil {
		return err
	}
	if !events.ValidUserID(id) {
		return errorf(CodeInvalidArgument, "user id must match ^[A-Za-z0-9_-]{1,64}$")
	}
	return nil
}

// CreateUser creates a user of tenant; id may be empty, for a generated one.
func (s *Service) CreateUser(ctx context.Context, meta Meta, tenant, id, name string) (projections.User, Result, error) {
	idempotent, err := s.normalize(&meta)
	if err != nil {
		return projections.User{}, Result{}, err
	}
	if id == "" {
		ulid, err := s.newID(idempotent, tenant, meta.CommandID, "user", s.cfg.Now())
		if err != nil {
			return projections.User{}, Result{}, err
		}
		id = "usr_" + ulid
	}
	if err := checkUserID(tenant, id); err != nil {
		return projections.User{}, Result{}, err
	}
	if _, err := s.Tenant(ctx, tenant); err != nil {
		return projections.User{}, Result{}, err
	}
	return transition(ctx, s, meta, step[projections.User]{tenant: tenant, agg: events.UserAggregate(id),
		scope: userScopeFilter(tenant, id), version: userVersion, decide: func(u projections.User, _ time.Time) (events.Payload, error) {
			if u.Exists() {
				return nil, errorf(CodeConflict, "user %s exists", id)
			}
			return events.UserCreatedV1{Name: name}, nil
		}})
}

// DisableUser disables a user: their keys fail with USER_DISABLED.
func (s *Service) DisableUser(ctx context.Context, meta Meta, tenant, id string) (projections.User, Result, error) {
	return s.userStatus(ctx, meta, tenant, id, projections.UserDisabled, events.UserDisabledV1{})
}

// EnableUser enables a disabled user.
func (s *Service) EnableUser(ctx context.Context, meta Meta, tenant, id string) (projections.User, Result, error) {
	return s.userStatus(ctx, meta, tenant, id, projections.UserActive, events.UserEnabledV1{})
}

// DeleteUser deletes a user for good: their keys fail with USER_DELETED.
func (s *Service) DeleteUser(ctx context.Context, meta Meta, tenant, id string) (projections.User, Result, error) {
	return s.userStatus(ctx, meta, tenant, id, projections.UserDeleted, events.UserDeletedV1{})
}

func (s *Service) userStatus(ctx context.Context, meta Meta, tenant, id string, to projections.UserStatus, p events.Payload) (projections.User, Result, error) {
	if err := checkUserID(tenant, id); err != nil {
		return projections.User{}, Result{}, err
	}
	return transition(ctx, s, meta, step[projections.User]{tenant: tenant, agg: events.UserAggregate(id),
		scope: userScopeFilter(tenant, id), version: userVersion, decide: func(u projections.User, _ time.Time) (events.Payload, error) {
			switch {
			case !u.Exists():
				return nil, errorf(CodeNotFound, "no user %s", id)
			case u.Status == to:
				return nil, nil
			case u.Status == projections.UserDeleted:
				return nil, errorf(CodeFailedPrecondition, "user %s is deleted, which is final", id)
			}
			return p, nil
		}})
}

// RevokeUserKeys revokes every key of a user issued before before (now when
// nil), whatever the keys' own state.
func (s *Service) RevokeUserKeys(ctx context.Context, meta Meta, tenant, id string, before *time.Time) (projections.User, Result, error) {
	if err := checkUserID(tenant, id); err != nil {
		return projections.User{}, Result{}, err
	}
	return transition(ctx, s, meta, step[projections.User]{tenant: tenant, agg: events.UserAggregate(id),
		scope: userScopeFilter(tenant, id), version: userVersion, decide: func(u projections.User, now time.Time) (events.Payload, error) {
			if !u.Exists() {
				return nil, errorf(CodeNotFound, "no user %s", id)
			}
			t, err := revokeBefore(now, before, u.KeysRevokedBefore)
			if t.IsZero() || err != nil {
				return nil, err
			}
			return events.UserKeysRevokedBeforeV1{Before: t}, nil
		}})
}

// revokeBefore decides a "revoke keys issued before" command: the time to
// record (before, or now when nil), or zero when the revocation recorded
// already (current) covers it.
func revokeBefore(now time.Time, before *time.Time, current time.Time) (time.Time, error) {
	t := now
	if before != nil {
		t = before.UTC()
	}
	switch {
	case t.After(now):
		return time.Time{}, errorf(CodeInvalidArgument, "before must not be in the future")
	case !t.After(current):
		return time.Time{}, nil // an earlier revocation covers it
	}
	return t, nil
}

// User returns a user's current state.
func (s *Service) User(ctx context.Context, tenant, id string) (projections.User, error) {
	if err := checkUserID(tenant, id); err != nil {
		return projections.User{}, err
	}
	l, err := load[projections.User](ctx, s.cfg.Store, tenant, events.UserAggregate(id))
	if err != nil {
		return projections.User{}, mapStoreError(err)
	}
	if !l.State.Exists() {
		return projections.User{}, errorf(CodeNotFound, "no user %s", id)
	}
	return l.State, nil
}
