package control

import (
	"context"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
)

// judged is a filter whose messages up to asOf a command was judged on.
type judged struct {
	filter string
	asOf   uint64
}

type stateful[T any] interface {
	Apply(events.Recorded) (T, error)
}

// step describes a command that appends (at most) one event to one
// aggregate.
type step[T any] struct {
	tenant string
	agg    events.Aggregate
	// scope, when set, is a filter the append expects nothing to have
	// changed under since before the aggregate was loaded (see userScope).
	scope string
	// judged, when set, is what the command rests on was judged against
	// elsewhere (a read model): a change under its filter after asOf is a
	// conflict, not decided again.
	judged *judged
	// pinned: the caller gave a version, so a conflict is not retried
	// (Meta.IfMatch pins every transition, and is checked by it).
	pinned  bool
	version func(T) uint64
	// decide returns the payload to append, nil when the aggregate is
	// already as asked (nothing is appended), or a domain error.
	decide func(state T, now time.Time) (events.Payload, error)
	// check, when set, vets the payload against more of the log before it
	// is appended (unique path prefixes).
	check func(ctx context.Context, p events.Payload) error
}

// transition runs a step: load, replay or decide, check, append; again on
// a conflict.
func transition[T stateful[T]](ctx context.Context, s *Service, meta Meta, st step[T]) (T, Result, error) {
	var (
		out T
		res Result
	)
	tenant, agg, scopeFilter, decide := st.tenant, st.agg, st.scope, st.decide
	if _, err := s.normalize(&meta); err != nil {
		return out, res, err
	}
	subject, err := events.Subject(tenant, agg)
	if err != nil {
		return out, res, errorf(CodeInvalidArgument, "%v", err)
	}
	err = s.run(ctx, &meta, st.pinned, func(ctx context.Context, now time.Time) error {
		var scope *store.Scope
		if scopeFilter != "" {
			seq, err := s.cfg.Store.LastSeq(ctx, scopeFilter)
			if err != nil {
				return err
			}
			scope = &store.Scope{Filter: scopeFilter, Seq: seq}
		}
		if j := st.judged; j != nil {
			seq, err := s.cfg.Store.LastSeq(ctx, j.filter)
			if err != nil {
				return err
			}
			if seq > j.asOf {
				return errorf(CodeConflict, "what this change was judged on changed meanwhile (%s); retry", j.filter)
			}
		}
		l, err := load[T](ctx, s.cfg.Store, tenant, agg)
		if err != nil {
			return err
		}
		if recs := l.recorded(meta.CommandID); len(recs) > 0 {
			out, res = l.State, Result{Seq: lastSeq(recs), Replayed: true}
			return nil
		}
		if err := ifMatch(meta.IfMatch, st.version(l.State)); err != nil {
			return err
		}
		p, err := decide(l.State, now)
		if err != nil || p == nil {
			out, res = l.State, Result{Seq: st.version(l.State), Unchanged: err == nil}
			return err
		}
		if err := checkPayload(p); err != nil {
			return err
		}
		if st.check != nil {
			if err := st.check(ctx, p); err != nil {
				return err
			}
		}
		e, err := s.event(&meta, now, tenant, agg, p)
		if err != nil {
			return err
		}
		recs, err := s.append(ctx, &meta, scope, store.Write{Expect: l.Head, Events: []events.Event{e}})
		if err != nil {
			return err
		}
		out, res = applied(l.State, recs, subject), Result{Seq: lastSeq(recs), Replayed: recs[0].ID != e.ID}
		return nil
	})
	return out, res, err
}

// ifMatch checks an If-Match version against the aggregate's.
func ifMatch(want *uint64, have uint64) error {
	if want != nil && *want != have {
		return errorf(CodeConflict, "version %d does not match the current version %d", *want, have)
	}
	return nil
}
