package control

import (
	"context"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
)

// PolicySpec is what CreatePolicy needs.
type PolicySpec struct {
	ID        string
	Name      string
	Scopes    []string
	RateLimit *events.RateLimit
	// MaxTTL is a duration such as "90d" ("": no bound).
	MaxTTL string
	APIs   []string
}

// PolicyPatch is what UpdatePolicy changes; nil fields stay as they are.
// A RateLimit pointing at nil, an empty MaxTTL or an empty list removes
// the value.
type PolicyPatch struct {
	Name      *string
	Scopes    *[]string
	RateLimit **events.RateLimit
	MaxTTL    *string
	APIs      *[]string
}

func policyVersion(p projections.Policy) uint64 { return p.Version }

func checkPolicyID(tenant, id string) error {
	if err := checkTenantID(tenant); err != nil {
		return err
	}
	if !events.ValidPolicyID(id) {
		return errorf(CodeInvalidArgument, "policy id must match ^[a-z0-9][a-z0-9-]{0,62}$")
	}
	return nil
}

func (s *Service) policyStep(meta *Meta, tenant, id string, version *uint64, decide func(p projections.Policy) (events.Payload, error)) step[projections.Policy] {
	st := step[projections.Policy]{tenant: tenant, agg: events.PolicyAggregate(id), pinned: version != nil, version: policyVersion,
		decide: func(p projections.Policy, _ time.Time) (events.Payload, error) {
			if p.Exists() {
				if err := ifMatch(version, p.Version); err != nil {
					return nil, err
				}
			}
			return decide(p)
		}}
	if c := meta.Confine; c != nil && c.AsOf != 0 {
		// The keys the change reaches were judged as of AsOf: none of the
		// tenant's may have changed since. The append's scope is the whole
		// tenant (the policy's subject must lie in it).
		st.scope, _ = events.TenantFilter(tenant)
		st.judged = &judged{filter: events.TenantKeysFilter(tenant), asOf: c.AsOf}
	}
	return st
}

// CreatePolicy defines an access policy of tenant.
func (s *Service) CreatePolicy(ctx context.Context, meta Meta, tenant string, spec PolicySpec) (projections.Policy, Result, error) {
	if err := checkPolicyID(tenant, spec.ID); err != nil {
		return projections.Policy{}, Result{}, err
	}
	if _, err := s.Tenant(ctx, tenant); err != nil {
		return projections.Policy{}, Result{}, err
	}
	if err := meta.Confine.grants("scopes: the policy", spec.Scopes); err != nil {
		return projections.Policy{}, Result{}, err
	}
	if err := s.checkPolicyAPIs(ctx, tenant, spec.APIs); err != nil {
		return projections.Policy{}, Result{}, err
	}
	return transition(ctx, s, meta, s.policyStep(&meta, tenant, spec.ID, nil, func(p projections.Policy) (events.Payload, error) {
		if p.Exists() {
			return nil, errorf(CodeConflict, "policy %s exists", spec.ID)
		}
		return events.PolicyCreatedV1{Name: spec.Name, Scopes: spec.Scopes, RateLimit: spec.RateLimit, MaxTTL: spec.MaxTTL, APIs: spec.APIs}, nil
	}))
}

func policyUsable(p projections.Policy, id string) error {
	switch {
	case !p.Exists():
		return errorf(CodeNotFound, "no policy %s", id)
	case p.Status == projections.PolicyRetired:
		return errorf(CodeFailedPrecondition, "policy %s is retired, which is final", id)
	}
	return nil
}

// UpdatePolicy changes a policy; every key that references it verifies
// under the change from the next event the readers apply.
func (s *Service) UpdatePolicy(ctx context.Context, meta Meta, tenant, id string, patch PolicyPatch, version *uint64) (projections.Policy, Result, error) {
	if err := checkPolicyID(tenant, id); err != nil {
		return projections.Policy{}, Result{}, err
	}
	if patch == (PolicyPatch{}) {
		return projections.Policy{}, Result{}, errorf(CodeInvalidArgument, "nothing to update")
	}
	if patch.Scopes != nil {
		if err := meta.Confine.grants("scopes: the policy", *patch.Scopes); err != nil {
			return projections.Policy{}, Result{}, err
		}
	}
	if patch.APIs != nil {
		if err := s.checkPolicyAPIs(ctx, tenant, *patch.APIs); err != nil {
			return projections.Policy{}, Result{}, err
		}
	}
	return transition(ctx, s, meta, s.policyStep(&meta, tenant, id, version, func(p projections.Policy) (events.Payload, error) {
		if err := policyUsable(p, id); err != nil {
			return nil, err
		}
		// A policy that grants what the caller lacks is not the caller's
		// to change: loosening its limits would widen keys it could not
		// have issued.
		if err := meta.Confine.grants("policy "+id, p.Scopes); err != nil {
			return nil, err
		}
		u := events.PolicyUpdatedV1{Name: p.Name, Scopes: p.Scopes, RateLimit: p.RateLimit, MaxTTL: events.FormatTTL(p.MaxTTL), APIs: p.APIs}
		if patch.Name != nil {
			u.Name = *patch.Name
		}
		if patch.Scopes != nil {
			u.Scopes = *patch.Scopes
		}
		if patch.RateLimit != nil {
			u.RateLimit = *patch.RateLimit
		}
		if patch.MaxTTL != nil {
			u.MaxTTL = *patch.MaxTTL
		}
		if patch.APIs != nil {
			u.APIs = *patch.APIs
		}
		if samePolicy(p, u) {
			return nil, nil // as asked already: nothing appended
		}
		return u, nil
	}))
}

// samePolicy reports whether an update would leave the policy as it is.
func samePolicy(p projections.Policy, u events.PolicyUpdatedV1) bool {
	sameRate := (p.RateLimit == nil) == (u.RateLimit == nil) && (p.RateLimit == nil || *p.RateLimit == *u.RateLimit)
	return p.Name == u.Name && slices.Equal(p.Scopes, u.Scopes) && sameRate && p.MaxTTL == events.PolicyTTL(u.MaxTTL) && slices.Equal(p.APIs, u.APIs)
}

// checkPolicyAPIs refuses a policy's apis that name no API of the tenant:
// a typo would make every key that references the policy unusable.
func (s *Service) checkPolicyAPIs(ctx context.Context, tenant string, apis []string) error {
	for _, id := range apis {
		if !events.ValidAPIID(id) {
			return errorf(CodeInvalidArgument, "apis: %q is not an API id", id)
		}
		l, err := load[projections.API](ctx, s.cfg.Store, tenant, events.APIAggregate(id))
		if err != nil {
			return mapStoreError(err)
		}
		if !l.State.Exists() {
			return errorf(CodeInvalidArgument, "apis: no API %s in tenant %s", id, tenant)
		}
		if l.State.Status == projections.APIRetired {
			return errorf(CodeInvalidArgument, "apis: API %s is retired", id)
		}
	}
	return nil
}

// RetirePolicy retires a policy for good: it grants and limits nothing.
func (s *Service) RetirePolicy(ctx context.Context, meta Meta, tenant, id string, version *uint64) (projections.Policy, Result, error) {
	if err := checkPolicyID(tenant, id); err != nil {
		return projections.Policy{}, Result{}, err
	}
	return transition(ctx, s, meta, s.policyStep(&meta, tenant, id, version, func(p projections.Policy) (events.Payload, error) {
		if !p.Exists() {
			return nil, errorf(CodeNotFound, "no policy %s", id)
		}
		if p.Status == projections.PolicyRetired {
			return nil, nil
		}
		if err := meta.Confine.grants("policy "+id, p.Scopes); err != nil {
			return nil, err
		}
		return events.PolicyRetiredV1{}, nil
	}))
}

// Policy returns a policy's current state.
func (s *Service) Policy(ctx context.Context, tenant, id string) (projections.Policy, error) {
	if err := checkPolicyID(tenant, id); err != nil {
		return projections.Policy{}, err
	}
	l, err := load[projections.Policy](ctx, s.cfg.Store, tenant, events.PolicyAggregate(id))
	if err != nil {
		return projections.Policy{}, mapStoreError(err)
	}
	if !l.State.Exists() {
		return projections.Policy{}, errorf(CodeNotFound, "no policy %s", id)
	}
	return l.State, nil
}

// checkKeyPolicies checks what a key may reference: policies of its tenant
// that exist and are not retired (those in kept, which it references
// already, may be), that grant only what a confined caller holds, that do
// not end the key at once (a key issued at issued, checked at now), and
// whose lifetime bound the key's own expiry (nil: none) does not outlive —
// which would shorten it silently.
func (s *Service) checkKeyPolicies(ctx context.Context, meta *Meta, tenant string, ids, kept []string, issued, now time.Time, expires *time.Time) error {
	for _, id := range ids {
		if !events.ValidPolicyID(id) {
			return errorf(CodeInvalidArgument, "policies: %q is not a policy id", id)
		}
		p, err := s.Policy(ctx, tenant, id)
		if CodeOf(err) == CodeNotFound {
			return errorf(CodeInvalidArgument, "policies: no policy %s", id)
		}
		if err != nil {
			return err
		}
		known := slices.Contains(kept, id) // referenced already: neither granted nor bounded anew
		if p.Status == projections.PolicyRetired {
			if known {
				continue
			}
			return errorf(CodeFailedPrecondition, "policies: policy %s is retired", id)
		}
		if !known {
			if err := meta.Confine.grants("policies: policy "+id, p.Scopes); err != nil {
				return err
			}
		}
		if p.MaxTTL == 0 {
			continue
		}
		end := issued.Add(p.MaxTTL)
		switch {
		case !known && !end.After(now):
			return errorf(CodeFailedPrecondition, "policies: policy %s allows keys %s after their issue; this key was issued at %s and would stop working at once",
				id, events.FormatTTL(p.MaxTTL), issued.UTC().Format(time.RFC3339))
		case expires != nil && expires.After(end):
			return errorf(CodeInvalidArgument, "expires_at: %s (expires_at, or ttl from now) is beyond what policy %s allows (%s after issue, %s); give an earlier one or none",
				expires.UTC().Format(time.RFC3339), id, events.FormatTTL(p.MaxTTL), end.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// policyEnd is when a key issued at issued stops verifying by its live
// policies' lifetime bounds (ok false: none bounds it), and the policy.
func (s *Service) policyEnd(ctx context.Context, tenant string, ids []string, issued time.Time) (end time.Time, by string, ok bool, err error) {
	for _, id := range ids {
		p, err := s.Policy(ctx, tenant, id)
		if CodeOf(err) == CodeNotFound {
			continue
		}
		if err != nil {
			return end, by, ok, err
		}
		if p.Live() && p.MaxTTL > 0 {
			if e := issued.Add(p.MaxTTL); !ok || e.Before(end) {
				end, by, ok = e, id, true
			}
		}
	}
	return end, by, ok, nil
}
