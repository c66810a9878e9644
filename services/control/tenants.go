package control

import (
	"context"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
)

func tenantVersion(t projections.Tenant) uint64 { return t.Version }

func checkTenantID(id string) error {
	if !events.ValidTenantID(id) {
		return errorf(CodeInvalidArgument, "tenant id must match ^[a-z0-9][a-z0-9-]{0,62}$")
	}
	if id == events.SystemTenant {
		return errorf(CodeInvalidArgument, "tenant id %s is Keytrail's own", id)
	}
	return nil
}

// CreateTenant creates tenant id.
func (s *Service) CreateTenant(ctx context.Context, meta Meta, id, name string) (projections.Tenant, Result, error) {
	if err := checkTenantID(id); err != nil {
		return projections.Tenant{}, Result{}, err
	}
	return transition(ctx, s, meta, step[projections.Tenant]{tenant: id, agg: events.TenantAggregate(id), version: tenantVersion,
		decide: func(t projections.Tenant, _ time.Time) (events.Payload, error) {
			if t.Exists() {
				return nil, errorf(CodeConflict, "tenant %s exists", id)
			}
			return events.TenantCreatedV1{Name: name}, nil
		}})
}

// SuspendTenant suspends tenant id: every one of its keys fails with
// TENANT_SUSPENDED until it is resumed. Suspending a suspended tenant
// changes nothing.
func (s *Service) SuspendTenant(ctx context.Context, meta Meta, id string) (projections.Tenant, Result, error) {
	return s.tenantStatus(ctx, meta, id, projections.TenantSuspended, events.TenantSuspendedV1{})
}

// ResumeTenant resumes a suspended tenant.
func (s *Service) ResumeTenant(ctx context.Context, meta Meta, id string) (projections.Tenant, Result, error) {
	return s.tenantStatus(ctx, meta, id, projections.TenantActive, events.TenantResumedV1{})
}

// RevokeTenantKeys revokes every key of a tenant issued before before (now
// when nil), whatever the keys' own state: the response to a leak of
// unknown extent.
func (s *Service) RevokeTenantKeys(ctx context.Context, meta Meta, id string, before *time.Time) (projections.Tenant, Result, error) {
	if err := checkTenantID(id); err != nil {
		return projections.Tenant{}, Result{}, err
	}
	return transition(ctx, s, meta, step[projections.Tenant]{tenant: id, agg: events.TenantAggregate(id), version: tenantVersion,
		decide: func(t projections.Tenant, now time.Time) (events.Payload, error) {
			if !t.Exists() {
				return nil, errorf(CodeNotFound, "no tenant %s", id)
			}
			at, err := revokeBefore(now, before, t.KeysRevokedBefore)
			if at.IsZero() || err != nil {
				return nil, err
			}
			return events.TenantKeysRevokedBeforeV1{Before: at}, nil
		}})
}

// ConfigureNotices sets how long before a key stops working the tenant is
// told, and after how long without a request a key is told unused (empty:
// the defaults). The same settings again change nothing.
func (s *Service) ConfigureNotices(ctx context.Context, meta Meta, id string, settings events.TenantNoticesConfiguredV1) (projections.Tenant, Result, error) {
	if err := checkTenantID(id); err != nil {
		return projections.Tenant{}, Result{}, err
	}
	if err := settings.Validate(); err != nil {
		return projections.Tenant{}, Result{}, errorf(CodeInvalidArgument, "%s", err.Error())
	}
	return transition(ctx, s, meta, step[projections.Tenant]{tenant: id, agg: events.TenantAggregate(id), version: tenantVersion,
		decide: func(t projections.Tenant, _ time.Time) (events.Payload, error) {
			switch {
			case !t.Exists():
				return nil, errorf(CodeNotFound, "no tenant %s", id)
			case slices.Equal(t.Notices.ExpiryBefore, settings.ExpiryBefore) && t.Notices.UnusedAfter == settings.UnusedAfter:
				return nil, nil
			}
			return settings, nil
		}})
}

func (s *Service) tenantStatus(ctx context.Context, meta Meta, id string, to projections.TenantStatus, p events.Payload) (projections.Tenant, Result, error) {
	if err := checkTenantID(id); err != nil {
		return projections.Tenant{}, Result{}, err
	}
	return transition(ctx, s, meta, step[projections.Tenant]{tenant: id, agg: events.TenantAggregate(id), version: tenantVersion,
		decide: func(t projections.Tenant, _ time.Time) (events.Payload, error) {
			switch {
			case !t.Exists():
				return nil, errorf(CodeNotFound, "no tenant %s", id)
			case t.Status == to:
				return nil, nil
			}
			return p, nil
		}})
}

// Tenant returns tenant id's current state.
func (s *Service) Tenant(ctx context.Context, id string) (projections.Tenant, error) {
	if err := checkTenantID(id); err != nil {
		return projections.Tenant{}, err
	}
	l, err := load[projections.Tenant](ctx, s.cfg.Store, id, events.TenantAggregate(id))
	if err != nil {
		return projections.Tenant{}, mapStoreError(err)
	}
	if !l.State.Exists() {
		return projections.Tenant{}, errorf(CodeNotFound, "no tenant %s", id)
	}
	return l.State, nil
}
