package control

import (
	"context"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
)

// APISpec is what CreateAPI needs.
type APISpec struct {
	ID         string
	Name       string
	PathPrefix string
	Upstreams  []string
	Scopes     []string
	RateLimit  *events.RateLimit
}

// APIPatch is what UpdateAPI changes; nil fields stay as they are.
type APIPatch struct {
	Name       *string
	PathPrefix *string
	Upstreams  *[]string
	Scopes     *[]string
	RateLimit  *events.RateLimit
}

func apiVersion(a projections.API) uint64 { return a.Version }

func checkAPIID(tenant, id string) error {
	if err := checkTenantID(tenant); err != nil {
		return err
	}
	if !events.ValidAPIID(id) {
		return errorf(CodeInvalidArgument, "API id must match ^[a-z0-9][a-z0-9-]{0,62}$")
	}
	return nil
}

// pathOverlaps reports whether requests under one prefix could be routed to
// the other: equal, or one is a path-segment prefix of the other.
func pathOverlaps(a, b string) bool {
	under := func(p, q string) bool { // q is p or below it
		return strings.HasPrefix(q, p) && (len(q) == len(p) || strings.HasSuffix(p, "/") || q[len(p)] == '/')
	}
	return under(a, b) || under(b, a)
}

// checkPrefix refuses a prefix that another API holds: any tenant's equal
// prefix, or another tenant's prefix above or below it (which would let one
// tenant capture the other's traffic). Retired APIs keep their prefix, so
// that their clients get 410 rather than somebody else's API — until the
// root key reclaims it (reclaim).
func checkPrefix(all []events.Recorded, tenant, id, prefix string, reclaim bool) error {
	apis := map[[2]string]projections.API{}
	for _, r := range all {
		k := [2]string{r.Tenant, r.Aggregate.ID}
		apis[k], _ = apis[k].Apply(r)
	}
	// Compared case-folded: a prefix that differs from another only in case
	// would make the gateway refuse the other's paths as ambiguous.
	folded := strings.ToLower(prefix)
	for k, a := range apis {
		if !a.Exists() || (k[0] == tenant && k[1] == id) || (reclaim && a.Status == projections.APIRetired) {
			continue
		}
		other := strings.ToLower(a.PathPrefix)
		if other == folded || (k[0] != tenant && pathOverlaps(other, folded)) {
			return errorf(CodeConflict, "path prefix %s overlaps one that is taken (case is ignored)", prefix)
		}
	}
	return nil
}

// apiStep is a step on an API. Every API command appends under the scope of
// all APIs of all tenants, so that two tenants cannot take overlapping
// prefixes at the same moment, and a command that sets a prefix reads every
// API's events to check it.
func (s *Service) apiStep(tenant, id string, root bool, version *uint64, decide func(a projections.API, now time.Time) (events.Payload, error)) step[projections.API] {
	return step[projections.API]{tenant: tenant, agg: events.APIAggregate(id), scope: events.AllAPIsFilter,
		pinned: version != nil, version: apiVersion,
		decide: func(a projections.API, now time.Time) (events.Payload, error) {
			if a.Exists() {
				if err := ifMatch(version, a.Version); err != nil {
					return nil, err
				}
			}
			return decide(a, now)
		},
		check: func(ctx context.Context, p events.Payload) error {
			var prefix string
			switch p := p.(type) {
			case events.APICreatedV1:
				prefix = p.PathPrefix
			case events.APIUpdatedV1:
				prefix = p.PathPrefix
			default:
				return nil
			}
			if err := checkPathPrefix(tenant, prefix, root); err != nil {
				return err
			}
			all, err := s.cfg.Store.LoadAll(ctx, events.AllAPIsFilter)
			if err != nil {
				return err
			}
			return checkPrefix(all, tenant, id, prefix, root)
		}}
}

// operator reports whether a command comes from the operator (the root key,
// or Keytrail's own tools) rather than a tenant admin's key.
func operator(meta Meta) bool { return !strings.HasPrefix(meta.Actor, events.KeyIDPrefix) }

// checkPathPrefix refuses a prefix that is not canonical (a "." or ".."
// segment, a segment ending in '.') or, for anyone but root, one outside
// the tenant's namespace: a tenant admin's prefixes are /<tenant>/...; "/",
// prefixes of one segment and other first segments are the operator's to
// give (root creates such an API for a tenant).
func checkPathPrefix(tenant, prefix string, root bool) error {
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "." || seg == ".." || strings.HasSuffix(seg, ".") {
			return errorf(CodeInvalidArgument, "path_prefix: %q has a segment . or .. or ending in '.'", prefix)
		}
	}
	trimmed := strings.Trim(prefix, "/")
	first, _, _ := strings.Cut(trimmed, "/")
	if !root && (!strings.Contains(trimmed, "/") || first != tenant) {
		return errorf(CodePermissionDenied, "path_prefix: a tenant admin's prefixes are /%s/<api>; / and other prefixes (%s) are given by the root key", tenant, prefix)
	}
	return nil
}

// CreateAPI publishes an API of tenant under a path prefix no other API holds.
func (s *Service) CreateAPI(ctx context.Context, meta Meta, tenant string, spec APISpec) (projections.API, Result, error) {
	if err := checkAPIID(tenant, spec.ID); err != nil {
		return projections.API{}, Result{}, err
	}
	if _, err := s.Tenant(ctx, tenant); err != nil {
		return projections.API{}, Result{}, err
	}
	if err := s.checkUpstreams(spec.Upstreams); err != nil {
		return projections.API{}, Result{}, err
	}
	return transition(ctx, s, meta, s.apiStep(tenant, spec.ID, operator(meta), nil, func(a projections.API, _ time.Time) (events.Payload, error) {
		if a.Exists() {
			return nil, errorf(CodeConflict, "API %s exists", spec.ID)
		}
		return events.APICreatedV1{Name: spec.Name, PathPrefix: spec.PathPrefix, Upstreams: spec.Upstreams,
			Scopes: spec.Scopes, RateLimit: spec.RateLimit}, nil
	}))
}

// UpdateAPI changes an API's name, prefix, upstreams, scopes or rate limit.
func (s *Service) UpdateAPI(ctx context.Context, meta Meta, tenant, id string, patch APIPatch, version *uint64) (projections.API, Result, error) {
	if err := checkAPIID(tenant, id); err != nil {
		return projections.API{}, Result{}, err
	}
	if patch == (APIPatch{}) {
		return projections.API{}, Result{}, errorf(CodeInvalidArgument, "nothing to update")
	}
	if patch.Upstreams != nil {
		if err := s.checkUpstreams(*patch.Upstreams); err != nil {
			return projections.API{}, Result{}, err
		}
	}
	return transition(ctx, s, meta, s.apiStep(tenant, id, operator(meta), version, func(a projections.API, _ time.Time) (events.Payload, error) {
		if err := apiUsable(a, id); err != nil {
			return nil, err
		}
		p := events.APIUpdatedV1{Name: a.Name, PathPrefix: a.PathPrefix, Upstreams: a.Upstreams, Scopes: a.Scopes, RateLimit: a.RateLimit}
		if patch.Name != nil {
			p.Name = *patch.Name
		}
		if patch.PathPrefix != nil {
			p.PathPrefix = *patch.PathPrefix
		}
		if patch.Upstreams != nil {
			p.Upstreams = *patch.Upstreams
		}
		if patch.Scopes != nil {
			p.Scopes = *patch.Scopes
		}
		if patch.RateLimit != nil {
			p.RateLimit = patch.RateLimit
		}
		return p, nil
	}))
}

// checkUpstreams refuses upstreams the egress policy denies: a literal
// internal address, localhost, one of Keytrail's own listeners (names are
// checked by the gateway when it dials them).
func (s *Service) checkUpstreams(upstreams []string) error {
	if s.cfg.Egress == nil {
		return nil
	}
	for i, u := range upstreams {
		if err := s.cfg.Egress.CheckURL(u); err != nil {
			return errorf(CodeInvalidArgument, "upstreams[%d]: %s", i, strings.TrimPrefix(err.Error(), "egress: upstream address not allowed: "))
		}
	}
	return nil
}

func apiUsable(a projections.API, id string) error {
	switch {
	case !a.Exists():
		return errorf(CodeNotFound, "no API %s", id)
	case a.Status == projections.APIRetired:
		return errorf(CodeFailedPrecondition, "API %s is retired, which is final", id)
	}
	return nil
}

// DeprecateAPI marks an API deprecated until sunset (in the future); the
// gateway adds Deprecation and Sunset headers. Deprecating again moves the
// sunset.
func (s *Service) DeprecateAPI(ctx context.Context, meta Meta, tenant, id string, sunset time.Time) (projections.API, Result, error) {
	if err := checkAPIID(tenant, id); err != nil {
		return projections.API{}, Result{}, err
	}
	return transition(ctx, s, meta, s.apiStep(tenant, id, operator(meta), nil, func(a projections.API, now time.Time) (events.Payload, error) {
		if err := apiUsable(a, id); err != nil {
			return nil, err
		}
		if !sunset.After(now) {
			return nil, errorf(CodeInvalidArgument, "sunset must be in the future")
		}
		if a.Sunset != nil && a.Sunset.Equal(sunset) {
			return nil, nil
		}
		return events.APIDeprecatedV1{Sunset: sunset.UTC()}, nil
	}))
}

// RetireAPI retires an API for good: the gateway answers 410. Retiring a
// retired API changes nothing.
func (s *Service) RetireAPI(ctx context.Context, meta Meta, tenant, id string) (projections.API, Result, error) {
	if err := checkAPIID(tenant, id); err != nil {
		return projections.API{}, Result{}, err
	}
	return transition(ctx, s, meta, s.apiStep(tenant, id, operator(meta), nil, func(a projections.API, _ time.Time) (events.Payload, error) {
		if !a.Exists() {
			return nil, errorf(CodeNotFound, "no API %s", id)
		}
		if a.Status == projections.APIRetired {
			return nil, nil
		}
		return events.APIRetiredV1{}, nil
	}))
}

// API returns an API's current state.
func (s *Service) API(ctx context.Context, tenant, id string) (projections.API, error) {
	if err := checkAPIID(tenant, id); err != nil {
		return projections.API{}, err
	}
	l, err := load[projections.API](ctx, s.cfg.Store, tenant, events.APIAggregate(id))
	if err != nil {
		return projections.API{}, mapStoreError(err)
	}
	if !l.State.Exists() {
		return projections.API{}, errorf(CodeNotFound, "no API %s", id)
	}
	return l.State, nil
}
