package projections

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keytrail/keytrail/events"
)

// AffectingKey keeps, of a key's history (store.KeyHistory), the events
// that bore on it: its own, its user's and its tenant's, and its policies'
// up to when it last let them go — a policy's changes before the key took
// it are kept (they made the policy the key took), those after the key
// dropped it for good are not.
func AffectingKey(history []events.Recorded, keyID string) []events.Recorded {
	keySets := func(r *events.Recorded) ([]string, bool) {
		if r.Aggregate.Kind != events.KindKey || r.Aggregate.ID != keyID {
			return nil, false
		}
		switch r.Data.(type) {
		case events.KeyIssuedV1, events.KeyUpdatedV1:
			return events.KeyPolicies(r.Data), true
		}
		return nil, false
	}
	keep := make([]bool, len(history))
	var now []string // the key's policies as of each event, forwards
	for i := range history {
		r := &history[i]
		if ids, ok := keySets(r); ok {
			now = ids
		}
		keep[i] = r.Aggregate.Kind != events.KindPolicy || slices.Contains(now, r.Aggregate.ID)
	}
	will := map[string]bool{} // policies the key takes at some later event, backwards
	for i := len(history) - 1; i >= 0; i-- {
		r := &history[i]
		if ids, ok := keySets(r); ok {
			for _, id := range ids {
				will[id] = true
			}
		}
		if r.Aggregate.Kind == events.KindPolicy && will[r.Aggregate.ID] {
			keep[i] = true
		}
	}
	out := make([]events.Recorded, 0, len(history))
	for i, r := range history {
		if keep[i] {
			out = append(out, r)
		}
	}
	return out
}

// Because says in words what a decision re-derived from a key's history
// (ExplainKey) owes to the key's policies, for the scopes need (the
// request's, and the API's): which policy change removed a missing scope,
// which retirement took it, which policy's lifetime ended the key. Empty
// when no policy had a say.
func Because(history []events.Recorded, d *Decision, need []string) []string {
	pols := d.Policies()
	if len(pols) == 0 || (d.Code != CodeInsufficientScope && d.Code != CodeExpired) {
		return nil
	}
	type change struct {
		r        events.Recorded
		revision int
		scopes   []string // a retired policy's, before it retired
	}
	states := map[string]Policy{}
	removed := map[[2]string]change{} // policy, scope → the event that last took it away
	retired := map[string]change{}
	for _, r := range history {
		// What ExplainKey folded: up to the decision's sequence and time.
		if r.Seq > d.Seq || r.OccurredAt.After(d.Now) || r.Aggregate.Kind != events.KindPolicy {
			continue
		}
		id := r.Aggregate.ID
		before := states[id]
		after, err := before.Apply(r)
		if err != nil {
			continue
		}
		states[id] = after
		for _, s := range before.Scopes {
			if !slices.Contains(after.Scopes, s) && after.Status == PolicyActive {
				removed[[2]string{id, s}] = change{r: r, revision: after.Revision}
			}
		}
		if after.Status == PolicyRetired && before.Status == PolicyActive {
			retired[id] = change{r, after.Revision, before.Scopes}
		}
	}
	by := func(c change) string {
		return fmt.Sprintf("at seq %d by %s", c.r.Seq, c.r.Actor)
	}
	// The key's live policies as the decision saw them (its scopes are the
	// decision's own; states holds the rest as of its sequence and time).
	var live []*Policy
	for _, id := range pols {
		if p, ok := states[id]; ok && p.Live() {
			live = append(live, &p)
		}
	}
	var out []string
	switch d.Code {
	case CodeInsufficientScope:
		for _, s := range need {
			if slices.Contains(d.EffectiveScopes(nil), s) {
				continue
			}
			for _, id := range pols {
				if c, ok := retired[id]; ok && slices.Contains(c.scopes, s) {
					out = append(out, fmt.Sprintf("INSUFFICIENT_SCOPE: %s was granted by policy %s, retired (v%d) %s", s, id, c.revision, by(c)))
				} else if c, ok := removed[[2]string{id, s}]; ok {
					out = append(out, fmt.Sprintf("INSUFFICIENT_SCOPE: %s removed from policy %s v%d %s", s, id, c.revision, by(c)))
				}
			}
		}
		if apis := allowedAPIs(live); d.API != "" && apis != nil && !slices.Contains(apis, d.API) {
			var confining []string
			for _, p := range live {
				confining = append(confining, fmt.Sprintf("%s v%d (%s)", p.ID, p.Revision, strings.Join(p.APIs, ", ")))
			}
			out = append(out, fmt.Sprintf("INSUFFICIENT_SCOPE: API %s is not among those the key's policies allow: %s", d.API, strings.Join(confining, "; ")))
		}
	case CodeExpired:
		for _, e := range d.Evidence() {
			if e.Type() != events.PolicyCreated && e.Type() != events.PolicyUpdated {
				continue
			}
			for _, r := range history {
				if r.Seq == e.Seq() {
					p := states[r.Aggregate.ID]
					out = append(out, fmt.Sprintf("EXPIRED: policy %s v%d allows keys %s after their issue, set at seq %d by %s",
						p.ID, p.Revision, events.FormatTTL(p.MaxTTL), r.Seq, r.Actor))
				}
			}
		}
	}
	return out
}
