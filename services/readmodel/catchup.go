package readmodel

import (
	"context"
	"fmt"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
)

// catchUpAtLeast is how far behind the log a model must start for it to
// read the checkpoints to catch up by: below it, verifying each signature
// costs less than reading them.
const catchUpAtLeast = 2 * events.CheckpointEvery

// catchUp is a model's plan to catch up by checkpoints: a chain of judged
// checkpoints, each covering the model's position when the one before
// ends, and the messages of the span being read.
type catchUp struct {
	steps []step
	span  []store.Delivery
}

type step struct {
	cp   events.Checkpoint
	note []byte
}

// planCatchUp reads the checkpoints and chains those whose judgement
// covers the log from applied on, each time the one reaching furthest.
// Their signatures are checked when their span has been read (the signer
// set is the log's, as of their sequence). Nil when there is nothing to
// plan: no root pinned, no checkpoints, or none from here.
func (m *Model) planCatchUp(ctx context.Context, applied, target uint64) *catchUp {
	if m.checkpoints == nil || m.trust == nil {
		return nil
	}
	m.mu.RLock()
	known := m.cat.ChainKnown()
	m.mu.RUnlock()
	if !known {
		return nil
	}
	notes, err := m.checkpoints(ctx, applied)
	if err != nil {
		m.log.Warn("checkpoints not read: catching up by verifying every signature", "err", err)
		return nil
	}
	var all []step
	for _, n := range notes {
		cp, err := events.ParseCheckpoint(events.NoteText(n))
		if err == nil && cp.Judged && cp.Seq > applied && cp.Seq <= target {
			all = append(all, step{cp, n})
		}
	}
	p := &catchUp{span: make([]store.Delivery, 0, events.CheckpointEvery)}
	for at := applied; ; {
		best := -1
		for i, s := range all {
			if s.cp.From <= at && s.cp.Seq > at && (best < 0 || s.cp.Seq > all[best].cp.Seq) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		p.steps = append(p.steps, all[best])
		at = all[best].cp.Seq
	}
	if len(p.steps) == 0 {
		return nil
	}
	return p
}

// take keeps d for the current span and reports whether it did (false:
// no plan, or past its end — apply d on its own).
func (p *catchUp) take(d store.Delivery) bool {
	if p == nil || len(p.steps) == 0 || d.Seq > p.steps[0].cp.Seq {
		return false
	}
	p.span = append(p.span, d)
	return true
}

// spanDone returns the current step and its messages once its last has
// been read, and moves to the next.
func (p *catchUp) spanDone() (step, []store.Delivery, bool) {
	if p == nil || len(p.steps) == 0 || len(p.span) == 0 || p.span[len(p.span)-1].Seq != p.steps[0].cp.Seq {
		return step{}, nil, false
	}
	s, span := p.steps[0], p.span
	// The next span reuses the array once this one is applied (take is
	// called again only then).
	p.steps, p.span = p.steps[1:], span[:0]
	return s, span, true
}

// applySpan applies the messages of a checkpoint's span taking its
// judgement of their signatures — after checking that the span follows the
// model's position without a gap, that folding it gives the chain the
// checkpoint states, and that a signer trusted as of its sequence signed
// it. Changes of the signer set in the span (the first span holds the
// first signer's addition) are applied first, each verified against the
// root, so that the signers of the checkpoint are known. Whatever does not
// check is applied as any other message, its signature verified.
func (m *Model) applySpan(span []store.Delivery, s step, target uint64) {
	k := -1
	for i, d := range span {
		if d.Err == nil && d.Event.Aggregate.Kind == events.KindTrust {
			k = i
		}
	}
	for _, d := range span[:k+1] {
		m.apply(d, target, nil)
	}
	rest := span[k+1:]
	if len(rest) == 0 {
		return
	}
	chains, err := m.checkSpan(rest, s)
	if err != nil {
		m.log.Warn("checkpoint not taken: verifying every signature of its span", "seq", s.cp.Seq, "err", err)
		for _, d := range rest {
			m.apply(d, target, nil)
		}
		return
	}
	m.mu.Lock()
	m.cat.Vouch(&s.cp)
	m.mu.Unlock()
	for i, d := range rest {
		m.apply(d, target, &chains[i])
	}
	m.mu.Lock()
	m.cat.Vouch(nil)
	m.mu.Unlock()
}

// checkSpan checks a span against its checkpoint and returns the global
// chain after each of its messages.
func (m *Model) checkSpan(span []store.Delivery, s step) ([]events.Hash, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c := m.cat
	if !c.ChainKnown() || span[0].Seq != c.Seq+1 || span[0].Seq <= s.cp.From {
		return nil, fmt.Errorf("the span does not follow the model's position %d", c.Seq)
	}
	chains := make([]events.Hash, len(span))
	chain := c.Chain
	for i, d := range span {
		if d.Seq != span[0].Seq+uint64(i) {
			return nil, fmt.Errorf("a gap in the log at seq %d", d.Seq)
		}
		chain = events.ChainNext(chain, d.Seq, d.Raw)
		chains[i] = chain
	}
	if chain != s.cp.Chain {
		return nil, fmt.Errorf("the log folds to another chain than the checkpoint states")
	}
	// The text checked is the one planned by: s.cp was parsed from it.
	if _, err := events.OpenCheckpoint(s.note, c.SignersAfter(s.cp.Seq, events.SignerRoleEvents)); err != nil {
		return nil, err
	}
	return chains, nil
}

// CatchUp says how many events the model took on a checkpoint's judgement
// of their signatures (vouched) and how many it judged one by one
// (verified), with a root pinned.
func (m *Model) CatchUp() (vouched, verified uint64) {
	return m.vouched.Load(), m.verified.Load()
}
