package control

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

// KeyHistory returns every event that bears on a key, in stream order: its
// own, its user's and its tenant's.
func (s *Service) KeyHistory(ctx context.Context, tenant, keyID string) ([]events.Recorded, error) {
	if err := checkKeyID(tenant, keyID); err != nil {
		return nil, err
	}
	user, found, err := s.cfg.Store.FindKey(ctx, tenant, keyID)
	if err != nil {
		return nil, mapStoreError(err)
	}
	if !found {
		return nil, errorf(CodeNotFound, "no key %s", keyID)
	}
	history, err := store.KeyHistory(ctx, s.cfg.Store, tenant, user, keyID)
	return history, mapStoreError(err)
}

// ExplainAt says which state of the log to explain a key against: the
// events up to Seq (all when 0) and those that occurred at or before At
// (all when zero), verified at At (or, without At, at the time of the last
// of those events).
type ExplainAt struct {
	At     time.Time
	Seq    uint64
	Scopes []string
	// API, when set, is an API of the key's tenant the request was for.
	API string
}

// Explanation is a re-derived decision and, in words, what the key's
// policies had to do with it (projections.Because).
type Explanation struct {
	projections.Decision
	Because []string
}

// Explain re-derives the decision a key would have received: the events
// that bear on it (its policies' included), folded as of then, verified as
// of then.
func (s *Service) Explain(ctx context.Context, tenant, keyID string, as ExplainAt) (Explanation, error) {
	history, err := s.KeyHistory(ctx, tenant, keyID)
	if err != nil {
		return Explanation{}, err
	}
	need := as.Scopes
	if as.API != "" {
		if !events.ValidAPIID(as.API) {
			return Explanation{}, errorf(CodeInvalidArgument, "api: not an API id")
		}
		l, err := load[projections.API](ctx, s.cfg.Store, tenant, events.APIAggregate(as.API))
		if err != nil {
			return Explanation{}, mapStoreError(err)
		}
		if !l.State.Exists() {
			return Explanation{}, errorf(CodeNotFound, "no API %s", as.API)
		}
		history = append(history, l.History...)
		slices.SortFunc(history, func(a, b events.Recorded) int { return cmp.Compare(a.Seq, b.Seq) })
		for _, r := range l.History { // the API's scopes as of then are needed too
			if (as.Seq == 0 || r.Seq <= as.Seq) && (as.At.IsZero() || !r.OccurredAt.After(as.At)) {
				switch p := r.Data.(type) {
				case events.APICreatedV1:
					need = append(slices.Clone(as.Scopes), p.Scopes...)
				case events.APIUpdatedV1:
					need = append(slices.Clone(as.Scopes), p.Scopes...)
				}
			}
		}
	}
	d, ok := projections.ExplainKey(history, tenant, keyID, as.Seq, as.At, as.Scopes, as.API)
	if !ok {
		return Explanation{}, errorf(CodeNotFound, "key %s did not exist then", keyID)
	}
	return Explanation{Decision: d, Because: projections.Because(history, &d, need)}, nil
}

// Evidence reads the events a decision rests on, for their times, actors
// and reasons.
func (s *Service) Evidence(ctx context.Context, d *projections.Decision) ([]events.Recorded, error) {
	var out []events.Recorded
	for _, e := range d.Evidence() {
		r, err := s.cfg.Store.Get(ctx, e.Seq())
		if err != nil {
			return nil, mapStoreError(err)
		}
		out = append(out, r)
	}
	return out, nil
}
