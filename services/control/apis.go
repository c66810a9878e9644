package control

import (
	"context"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
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
// that their clients get 410 rather than somebody else's API.
func checkPrefix(all []events.Recorded, tenant, id, prefix string) error {
	apis := map[[2]string]projections.API{}
	for _, r := range all {
		k := [2]string{r.Tenant, r.Aggregate.ID}
		apis[k], _ = apis[k].Apply(r)
	}
	for k, a := range apis {
		if !a.Exists() || (k[0] == tenant && k[1] == id) {
			continue
		}
		if a.PathPrefix == prefix || (k[0] != tenant && pathOverlaps(a.PathPrefix, prefix)) {
			return errorf(CodeConflict, "path prefix %s overlaps one that is taken", prefix)
		}
	}
	return nil
}

// prefixChange runs a command that sets an API's prefix: it reads every API
// of every tenant under one scope, so that two tenants cannot take
// overlapping prefixes at the same moment.
func (s *Service) prefixChange(ctx context.Context, meta Meta, tenant, id string, version *uint64,
	decide func(a projections.API, now time.Time) (events.Payload, string, error)) (projections.API, Result, error) {
	var (
		out projections.API
		res Result
	)
	if _, err := s.normalize(&meta); err != nil {
		return out, res, err
	}
	agg := events.APIAggregate(id)
	subject, _ := events.Subject(tenant, agg)
	err := s.run(ctx, &meta, version != nil, func(ctx context.Context, now time.Time) error {
		seq, err := s.cfg.Store.LastSeq(ctx, events.AllAPIsFilter)
		if err != nil {
			return err
		}
		scope := &store.Scope{Filter: events.AllAPIsFilter, Seq: seq}
		l, err := load[projections.API](ctx, s.cfg.Store, tenant, agg)
		if err != nil {
			return err
		}
		if recs := l.recorded(meta.CommandID); len(recs) > 0 {
			out, res = l.State, Result{Seq: lastSeq(recs), Replayed: true}
			return nil
		}
		if err := ifMatch(version, l.State.Version); err != nil {
			return err
		}
		p, prefix, err := decide(l.State, now)
		if err != nil {
			return err
		}
		if err := checkPayload(p); err != nil {
			return err
		}
		all, err := s.cfg.Store.LoadAll(ctx, events.AllAPIsFilter)
		if err != nil {
			return err
		}
		if err := checkPrefix(all, tenant, id, prefix); err != nil {
			return err
		}
		e, err := s.event(&meta, now, tenant, agg, p)
		if err != nil {
			return err
		}
		recs, err := s.cfg.Store.AppendAtomic(ctx, scope, store.Write{Expect: l.Head, Events: []events.Event{e}})
		if err != nil {
			return err
		}
		out, res = applied(l.State, recs, subject), Result{Seq: lastSeq(recs), Replayed: recs[0].ID != e.ID}
		return nil
	})
	return out, res, err
}

// CreateAPI publishes an API of tenant under a path prefix no other API holds.
func (s *Service) CreateAPI(ctx context.Context, meta Meta, tenant string, spec APISpec) (projections.API, Result, error) {
	if err := checkAPIID(tenant, spec.ID); err != nil {
		return projections.API{}, Result{}, err
	}
	if _, err := s.Tenant(ctx, tenant); err != nil {
		return projections.API{}, Result{}, err
	}
	return s.prefixChange(ctx, meta, tenant, spec.ID, nil, func(a projections.API, _ time.Time) (events.Payload, string, error) {
		if a.Exists() {
			return nil, "", errorf(CodeConflict, "API %s exists", spec.ID)
		}
		return events.APICreatedV1{Name: spec.Name, PathPrefix: spec.PathPrefix, Upstreams: spec.Upstreams,
			Scopes: spec.Scopes, RateLimit: spec.RateLimit}, spec.PathPrefix, nil
	})
}

// UpdateAPI changes an API's name, prefix, upstreams, scopes or rate limit.
func (s *Service) UpdateAPI(ctx context.Context, meta Meta, tenant, id string, patch APIPatch, version *uint64) (projections.API, Result, error) {
	if err := checkAPIID(tenant, id); err != nil {
		return projections.API{}, Result{}, err
	}
	if patch == (APIPatch{}) {
		return projections.API{}, Result{}, errorf(CodeInvalidArgument, "nothing to update")
	}
	return s.prefixChange(ctx, meta, tenant, id, version, func(a projections.API, _ time.Time) (events.Payload, string, error) {
		if err := apiUsable(a, id); err != nil {
			return nil, "", err
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
		return p, p.PathPrefix, nil
	})
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
	return transition(ctx, s, meta, tenant, events.APIAggregate(id), events.AllAPIsFilter, false, apiVersion,
		func(a projections.API, now time.Time) (events.Payload, error) {
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
		})
}

// RetireAPI retires an API for good: the gateway answers 410. Retiring a
// retired API changes nothing.
func (s *Service) RetireAPI(ctx context.Context, meta Meta, tenant, id string) (projections.API, Result, error) {
	if err := checkAPIID(tenant, id); err != nil {
		return projections.API{}, Result{}, err
	}
	return transition(ctx, s, meta, tenant, events.APIAggregate(id), events.AllAPIsFilter, false, apiVersion,
		func(a projections.API, _ time.Time) (events.Payload, error) {
			if !a.Exists() {
				return nil, errorf(CodeNotFound, "no API %s", id)
			}
			if a.Status == projections.APIRetired {
				return nil, nil
			}
			return events.APIRetiredV1{}, nil
		})
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
