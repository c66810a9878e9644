package control

import (
	"context"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
)

type stateful[T any] interface {
	Apply(events.Recorded) (T, error)
}

// transition runs a command that appends (at most) one event to one
// aggregate. decide returns the payload to append, nil when the aggregate is
// already as asked (nothing is appended), or a domain error. With a scope
// filter the append expects nothing to have changed under it since before
// the aggregate was loaded (see userScope).
func transition[T stateful[T]](ctx context.Context, s *Service, meta Meta, tenant string, agg events.Aggregate, scopeFilter string,
	pinned bool, version func(T) uint64, decide func(state T, now time.Time) (events.Payload, error)) (T, Result, error) {
	var (
		out T
		res Result
	)
	if _, err := s.normalize(&meta); err != nil {
		return out, res, err
	}
	subject, err := events.Subject(tenant, agg)
	if err != nil {
		return out, res, errorf(CodeInvalidArgument, "%v", err)
	}
	err = s.run(ctx, &meta, pinned, func(ctx context.Context, now time.Time) error {
		var scope *store.Scope
		if scopeFilter != "" {
			seq, err := s.cfg.Store.LastSeq(ctx, scopeFilter)
			if err != nil {
				return err
			}
			scope = &store.Scope{Filter: scopeFilter, Seq: seq}
		}
		l, err := load[T](ctx, s.cfg.Store, tenant, agg)
		if err != nil {
			return err
		}
		if recs := l.recorded(meta.CommandID); len(recs) > 0 {
			out, res = l.State, Result{Seq: lastSeq(recs), Replayed: true}
			return nil
		}
		p, err := decide(l.State, now)
		if err != nil || p == nil {
			out, res = l.State, Result{Seq: version(l.State)}
			return err
		}
		if err := checkPayload(p); err != nil {
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

// ifMatch checks an If-Match version against the aggregate's.
func ifMatch(want *uint64, have uint64) error {
	if want != nil && *want != have {
		return errorf(CodeConflict, "version %d does not match the current version %d", *want, have)
	}
	return nil
}
