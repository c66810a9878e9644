package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/trust"
)

// PendingGrace is how recently a decision may have been stored and still
// wait for its gateway's checkpoint (published every second).
const PendingGrace = 10 * time.Second

// gatewaySigners are the gateways' signers of decisions the log ever held
// (judged against the pinned root), and the decisions their checkpoints
// name.
type gatewaySigners struct {
	spans     map[string]projections.SignerSpan
	removedAt map[string]time.Time // when a removed signer's removal was stored
	signed    map[events.DecisionDigest]string
}

// gatewaySigners reads the gateways' signers from the log: nil when no
// root is pinned or the set never held a signer of decisions (decisions
// are then not checked for a signature).
func (a *Auditor) gatewaySigners(ctx context.Context) (*gatewaySigners, error) {
	if a.trust == nil {
		return nil, nil
	}
	set, history, err := trust.SignerSet(ctx, a.st, a.trust)
	if err != nil {
		return nil, err
	}
	spans := set.SignerSpans(events.SignerRoleDecisions)
	if len(spans) == 0 {
		return nil, nil
	}
	g := &gatewaySigners{spans: spans, removedAt: map[string]time.Time{}, signed: map[events.DecisionDigest]string{}}
	for id, s := range spans {
		for _, r := range history {
			if s.Removed != 0 && r.Seq == s.Removed {
				g.removedAt[id] = r.OccurredAt
			}
		}
	}
	return g, nil
}

// take opens a decision checkpoint stored at stored on subject and
// remembers the decisions it names; it says what is wrong with it, or
// nothing.
func (g *gatewaySigners) take(stored time.Time, subject string, data []byte) string {
	id := subject[len(events.DecisionCheckpointPrefix):]
	s, ok := g.spans[id]
	switch {
	case !ok:
		return fmt.Sprintf("a decision checkpoint of %s, which is not a trusted signer of decisions", id)
	case s.Removed != 0 && !stored.Before(g.removedAt[id]):
		return fmt.Sprintf("a decision checkpoint of %s stored after its removal from the trusted signers", id)
	}
	text, err := events.OpenNote(data, map[string]ed25519.PublicKey{id: s.Public})
	if err != nil {
		return fmt.Sprintf("a decision checkpoint on the subject of %s that it did not sign: %v", id, err)
	}
	cp, err := events.ParseDecisionCheckpoint(text)
	if err != nil {
		return err.Error()
	}
	for _, d := range cp.Digests {
		g.signed[d] = id
	}
	return ""
}

// unsigned sorts out the decisions no trusted gateway's checkpoint names:
// a mismatch each (written by no gateway), unless stored within grace of
// began (their checkpoint may be on its way). It returns
// the signed ones (and the pending), to be re-derived.
func (rep *DecisionReport) unsigned(logged []loggedDecision, g *gatewaySigners, began time.Time, grace time.Duration) []loggedDecision {
	out := logged[:0]
	for _, l := range logged {
		switch _, ok := g.signed[l.digest]; {
		case ok:
			rep.Signed++
		case l.stored.After(began.Add(-grace)):
			rep.Pending++
		default:
			rep.Mismatches = append(rep.Mismatches, mismatch(l, "", "written by no gateway: no decision checkpoint a trusted gateway signed names it"))
			continue
		}
		out = append(out, l)
	}
	return out
}
