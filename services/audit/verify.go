package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/trust"
)

// ChainProblem is a message of the event log that breaks its history.
type ChainProblem struct {
	Seq     uint64 `json:"seq"`
	Subject string `json:"subject,omitempty"`
	Problem string `json:"problem"`
}

// ChainReport is what VerifyChain read and found.
type ChainReport struct {
	Messages   uint64 `json:"messages"`
	Aggregates int    `json:"aggregates"`
	// Checkpoints are the signed checkpoints checked against the chain
	// (with the root key pinned).
	Checkpoints int            `json:"checkpoints"`
	Problems    []ChainProblem `json:"problems"`
}

// VerifyChain reads the whole event log and checks that the stream is as
// strong as Keytrail requires (deletes and purges denied, …) and that its
// sequence has no gap, then judges every message exactly as the readers do
// — one code path, projections.Catalog.Take: it must decode to an event of
// the aggregate its subject names, link to its aggregate's previous event,
// and be a transition its aggregate can make (a key.resumed after a
// key.revoked is not). Each message that fails is named.
func (a *Auditor) VerifyChain(ctx context.Context) (ChainReport, error) {
	var rep ChainReport
	info, err := a.streamInfo(ctx, events.StreamName)
	if err != nil {
		return rep, err
	}
	for _, w := range store.Weaknesses(info.Config, store.Config{}) {
		rep.Problems = append(rep.Problems, ChainProblem{Problem: "the stream is weaker than Keytrail requires: " + w})
	}
	if info.State.Msgs == 0 && info.State.LastSeq == 0 {
		return rep, nil
	}
	if first := info.State.FirstSeq; first > 1 {
		rep.Problems = append(rep.Problems, ChainProblem{Seq: 1, Problem: fmt.Sprintf("messages 1–%d are gone (the log was purged)", first-1)})
	}
	sub, err := a.st.Subscribe(ctx, store.SubscribeOptions{})
	if err != nil {
		return rep, err
	}
	defer sub.Close()
	cat := projections.NewVerificationCatalog()
	var checkpoints map[uint64][][]byte
	origin := trust.Origin(info.Created)
	if a.trust != nil {
		cat.SetTrust(a.trust)
		if checkpoints, err = a.checkpoints(ctx); err != nil {
			return rep, err
		}
	}
	subjects := map[string]bool{}
	// refused are the messages whose signatures the readers refused, by
	// sequence: what a judged checkpoint must name.
	refused := map[uint64]bool{}
	prev := info.State.FirstSeq - 1
	for prev < info.State.LastSeq {
		d, err := sub.Next(ctx)
		if err != nil {
			return rep, fmt.Errorf("audit: read the log at %d: %w", prev+1, err)
		}
		if d.Seq > prev+1 {
			rep.Problems = append(rep.Problems, ChainProblem{Seq: prev + 1, Problem: fmt.Sprintf("messages %d–%d are gone (deleted)", prev+1, d.Seq-1)})
		}
		prev = d.Seq
		rep.Messages++
		subjects[d.Subject] = true
		takeErr := cat.Take(d.Seq, d.Raw, d.Event, d.Err) // the message first: a checkpoint of seq is judged by the signers after it
		if errors.Is(takeErr, projections.ErrUnsigned) {
			refused[d.Seq] = true
		}
		for _, msg := range checkpoints[d.Seq] {
			rep.Checkpoints++
			if why := checkCheckpoint(msg, cat, origin, refused); why != "" {
				rep.Problems = append(rep.Problems, ChainProblem{Seq: d.Seq, Problem: why})
			}
		}
		switch err := takeErr; {
		case d.Err != nil:
			rep.Problems = append(rep.Problems, ChainProblem{Seq: d.Seq, Subject: d.Subject, Problem: "not an event: " + d.Err.Error()})
		case errors.Is(err, projections.ErrUnsigned):
			rep.Problems = append(rep.Problems, ChainProblem{Seq: d.Seq, Subject: d.Subject,
				Problem: "readers refuse it: " + strings.TrimPrefix(err.Error(), "projections: ")})
		case errors.Is(err, projections.ErrUnlinked):
			rep.Problems = append(rep.Problems, ChainProblem{Seq: d.Seq, Subject: d.Subject,
				Problem: "does not link: its prev_hash is not the hash of its aggregate's previous event"})
		case err != nil:
			rep.Problems = append(rep.Problems, ChainProblem{Seq: d.Seq, Subject: d.Subject,
				Problem: "readers refuse it: " + strings.TrimPrefix(err.Error(), "projections: ")})
		}
	}
	rep.Aggregates = len(subjects)
	return rep, nil
}

// checkCheckpoint checks a checkpoint of the log at cat.Seq: signed by a
// signer of events trusted then, of this log, stating the chain the log
// folds to, and — when judged — naming exactly the messages of its span
// whose signatures the readers refused (refused). It says what is wrong,
// or nothing.
func checkCheckpoint(msg []byte, cat *projections.Catalog, origin string, refused map[uint64]bool) string {
	cp, err := events.OpenCheckpoint(msg, cat.SignersAfter(cat.Seq, events.SignerRoleEvents))
	switch {
	case err != nil:
		return "a checkpoint not signed by a signer trusted then: " + err.Error()
	case cp.Origin != origin || cp.Seq != cat.Seq:
		return fmt.Sprintf("a checkpoint of another log (%s, seq %d)", cp.Origin, cp.Seq)
	case !cat.ChainKnown():
		return "a checkpoint of a log whose beginning is gone: its chain cannot be checked"
	case cp.Chain != cat.Chain:
		return fmt.Sprintf("a checkpoint states chain %s, the log gives %s: the history differs from what was signed", cp.Chain, cat.Chain)
	case !cp.Judged:
		return ""
	}
	for s := cp.From + 1; s <= cp.Seq; s++ {
		if refused[s] != cp.IsRefused(s) {
			if refused[s] {
				return fmt.Sprintf("a checkpoint vouches for the signature of seq %d, which the readers refuse", s)
			}
			return fmt.Sprintf("a checkpoint names seq %d refused, which the readers accept", s)
		}
	}
	return ""
}

// checkpointSeq is the sequence a checkpoint's text names.
func checkpointSeq(note []byte) (uint64, bool) {
	text := events.NoteText(note)
	lines := strings.SplitN(text, "\n", 3)
	if len(lines) < 3 {
		return 0, false
	}
	seq, err := strconv.ParseUint(lines[1], 10, 64)
	return seq, err == nil
}

// checkpoints reads the checkpoint stream: the notes, by the sequence
// they name. The sequence a note names is read from its text; an unsigned
// or unparsable one is still checked (and named) at that sequence.
func (a *Auditor) checkpoints(ctx context.Context) (map[uint64][][]byte, error) {
	notes, err := store.ReadCheckpoints(ctx, a.st.JetStream())
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	out := map[uint64][][]byte{}
	for _, n := range notes {
		if seq, ok := checkpointSeq(n); ok {
			out[seq] = append(out[seq], n)
		}
	}
	return out, nil
}

func (a *Auditor) streamInfo(ctx context.Context, name string) (*jetstream.StreamInfo, error) {
	s, err := a.st.JetStream().Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("audit: stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: stream %s: %w", name, err)
	}
	return info, nil
}

// DecisionMismatch is a logged decision that the history does not give.
type DecisionMismatch struct {
	Seq       uint64 `json:"seq"`
	RequestID string `json:"request_id"`
	Node      string `json:"node"`
	// Now is when the gateway decided (zero for an entry that is no
	// decision).
	Now     time.Time `json:"now,omitzero"`
	KeyID   string    `json:"key_id,omitempty"`
	Logged  string    `json:"logged"`
	Derived string    `json:"derived,omitempty"`
	Why     string    `json:"why"`
}

// DecisionReport is what VerifyDecisions checked and found.
type DecisionReport struct {
	Decisions int `json:"decisions"`
	Matched   int `json:"matched"`
	// Unverifiable decisions rest on what the log does not hold: STALE (a
	// node's freshness) and MISSING, MALFORMED, NOT_FOUND (the presented
	// secret, which is never logged).
	Unverifiable int `json:"unverifiable"`
	// Signed decisions are named by a checkpoint a trusted gateway signed;
	// Pending ones were stored too recently for their checkpoint (with a
	// root pinned and signers of decisions in the set: otherwise both 0).
	Signed     int                `json:"signed"`
	Pending    int                `json:"pending"`
	ByCode     map[string]int     `json:"by_code"`
	Mismatches []DecisionMismatch `json:"mismatches"`
}

type loggedDecision struct {
	rec    events.DecisionRecord
	seq    uint64    // the decision log's own sequence
	stored time.Time // when the server stored it
	digest events.DecisionDigest
}

// VerifyDecisions re-derives every decision in the decision log (since
// since, all when zero) from the event history: the log folded up to the
// decision's seq and the key verified at its now for its API must give the
// logged code (VALID for RATE_LIMITED: rate limits depend on traffic, not
// on history), the same also, key, tenant, user and evidence.
func (a *Auditor) VerifyDecisions(ctx context.Context, since time.Time) (DecisionReport, error) {
	rep := DecisionReport{ByCode: map[string]int{}}
	began := time.Now()
	gws, err := a.gatewaySigners(ctx)
	if err != nil {
		return rep, err
	}
	logged, bad, err := a.readDecisions(ctx, since, gws)
	if err != nil {
		return rep, err
	}
	rep.Mismatches = bad
	rep.Decisions = len(logged) + len(bad)
	if gws != nil {
		logged = rep.unsigned(logged, gws, began, a.grace)
	}
	slices.SortStableFunc(logged, func(x, y loggedDecision) int { return cmp.Compare(x.rec.Seq, y.rec.Seq) })

	last, err := a.st.LastSeq(ctx, "")
	if err != nil {
		return rep, err
	}
	c := a.catalog()
	i := 0
	check := func(upTo uint64) {
		for ; i < len(logged) && logged[i].rec.Seq <= upTo; i++ {
			rep.check(c, &logged[i])
		}
	}
	if len(logged) > 0 && last > 0 {
		upTo := min(logged[len(logged)-1].rec.Seq, last)
		sub, err := a.st.Subscribe(ctx, store.SubscribeOptions{})
		if err != nil {
			return rep, err
		}
		defer sub.Close()
		for c.Seq < upTo {
			d, err := sub.Next(ctx)
			if err != nil {
				return rep, fmt.Errorf("audit: read the log after %d: %w", c.Seq, err)
			}
			check(d.Seq - 1) // every decision made before this event
			c.Take(d.Seq, d.Raw, d.Event, d.Err)
		}
	}
	check(c.Seq)
	for ; i < len(logged); i++ {
		r := &logged[i].rec
		rep.Mismatches = append(rep.Mismatches, mismatch(logged[i], "", fmt.Sprintf("made at seq %d, beyond the log's last sequence %d", r.Seq, last)))
	}
	slices.SortStableFunc(rep.Mismatches, func(x, y DecisionMismatch) int { return cmp.Compare(x.Seq, y.Seq) })
	return rep, nil
}

// readDecisions reads the decision log as it is now: the decisions that
// decode, and a mismatch for each entry that does not.
func (a *Auditor) readDecisions(ctx context.Context, since time.Time, gws *gatewaySigners) ([]loggedDecision, []DecisionMismatch, error) {
	var out []loggedDecision
	var bad []DecisionMismatch
	scan := decisionScan{since: since}
	if gws != nil {
		scan.digests = true
		scan.checkpoint = func(seq uint64, stored time.Time, subject string, data []byte) bool {
			if why := gws.take(stored, subject, data); why != "" {
				bad = append(bad, DecisionMismatch{Seq: seq, Logged: "checkpoint", Why: why})
			}
			return true
		}
	}
	err := a.eachDecision(ctx, scan, func(l loggedDecision, why string) bool {
		switch {
		case why == "":
			out = append(out, l)
		case l.rec.Code == "":
			bad = append(bad, DecisionMismatch{Seq: l.seq, Logged: "?", Why: why})
		default:
			bad = append(bad, mismatch(l, "", why))
		}
		return true
	})
	return out, bad, err
}

func mismatch(l loggedDecision, derived, why string) DecisionMismatch {
	return DecisionMismatch{Seq: l.seq, RequestID: l.rec.RequestID, Node: l.rec.Node, Now: l.rec.Now, KeyID: l.rec.KeyID, Logged: l.rec.Code,
		Derived: derived, Why: why}
}

// check re-derives one decision against c, which holds the log up to it.
func (rep *DecisionReport) check(c *projections.Catalog, l *loggedDecision) {
	r := &l.rec
	rep.ByCode[r.Code]++
	if c := projections.Code(r.Code); c == projections.CodeStale || projections.SecretFailure(c) {
		rep.Unverifiable++
		return
	}
	if r.KeyID == "" {
		rep.Mismatches = append(rep.Mismatches, mismatch(*l, "", "a decision on a key, without the key's id"))
		return
	}
	k, ok := c.Key(r.Tenant, r.KeyID)
	if !ok {
		rep.Mismatches = append(rep.Mismatches, mismatch(*l, string(projections.CodeNotFound), fmt.Sprintf("key %s of %s did not exist at seq %d", r.KeyID, r.Tenant, r.Seq)))
		return
	}
	d := c.VerifyHash(k.SecretHash, projections.Request{APITenant: r.APITenant, API: r.API}, r.Now)
	want := r.Code
	if want == string(projections.CodeRateLimited) {
		want = string(projections.CodeValid) // otherwise valid: the limit depends on traffic
	}
	var why []string
	if string(d.Code) != want {
		why = append(why, fmt.Sprintf("the history gives %s", d.Code))
	}
	if also := codes(d.Also()); !slices.Equal(also, r.Also) {
		why = append(why, fmt.Sprintf("also %v, logged %v", also, r.Also))
	}
	if d.User != r.User || d.Tenant != r.Tenant {
		why = append(why, fmt.Sprintf("the key is %s/%s, logged %s/%s", d.Tenant, d.User, r.Tenant, r.User))
	}
	var ev []uint64
	for _, e := range d.Evidence() {
		ev = append(ev, e.Seq())
	}
	if !slices.Equal(ev, r.Evidence) {
		why = append(why, fmt.Sprintf("evidence %v, logged %v", ev, r.Evidence))
	}
	if len(why) > 0 {
		rep.Mismatches = append(rep.Mismatches, mismatch(*l, string(d.Code), strings.Join(why, "; ")))
		return
	}
	rep.Matched++
}

func codes(cs []projections.Code) []string {
	var out []string
	for _, c := range cs {
		out = append(out, string(c))
	}
	return out
}

// DecisionExplanation is a logged decision re-derived from the history, and
// the events it rests on.
type DecisionExplanation struct {
	Logged   events.DecisionRecord
	Derived  projections.Decision
	Evidence []events.Recorded
	// Why is empty when the history gives the logged decision; otherwise it
	// says how they differ. Unverifiable decisions (STALE, and MISSING,
	// MALFORMED, NOT_FOUND, whose input is not logged) are not re-derived.
	Why          string
	Unverifiable bool
	// For INSUFFICIENT_SCOPE (decided or also failing): the scopes the API
	// required then, those the key held, and those it lacked.
	Scopes *ScopeGap
	// SignedBy is the gateway signer whose checkpoint names the decision;
	// Unsigned says why none does (ExplainRequest, with a root pinned and
	// gateways signing: otherwise both empty).
	SignedBy, Unsigned string
}

// ScopeGap is why a key's scopes did not satisfy an API's.
type ScopeGap struct {
	Required []string `json:"required"`
	Held     []string `json:"held"`
	Missing  []string `json:"missing"`
}

// ExplainDecision folds the whole log up to the decision's sequence and
// decides the key at the decision's time for its API, as the gateway did.
func (a *Auditor) ExplainDecision(ctx context.Context, rec events.DecisionRecord) (DecisionExplanation, error) {
	x := DecisionExplanation{Logged: rec}
	c := a.catalog()
	if rec.Seq > 0 {
		sub, err := a.st.Subscribe(ctx, store.SubscribeOptions{})
		if err != nil {
			return x, err
		}
		defer sub.Close()
		last, err := a.st.LastSeq(ctx, "")
		if err != nil {
			return x, err
		}
		for c.Seq < min(rec.Seq, last) {
			d, err := sub.Next(ctx)
			if err != nil {
				return x, fmt.Errorf("audit: read the log after %d: %w", c.Seq, err)
			}
			c.Take(d.Seq, d.Raw, d.Event, d.Err)
		}
	}
	rep := DecisionReport{ByCode: map[string]int{}}
	l := loggedDecision{rec: rec}
	rep.check(c, &l)
	switch {
	case rep.Unverifiable > 0:
		x.Unverifiable = true
		return x, nil
	case len(rep.Mismatches) > 0:
		x.Why = rep.Mismatches[0].Why
	}
	if k, ok := c.Key(rec.Tenant, rec.KeyID); ok {
		x.Derived = c.VerifyHash(k.SecretHash, projections.Request{APITenant: rec.APITenant, API: rec.API}, rec.Now)
		if api, ok := c.API(rec.APITenant, rec.API); ok && (x.Derived.Code == projections.CodeInsufficientScope ||
			slices.Contains(x.Derived.Also(), projections.CodeInsufficientScope)) {
			held := x.Derived.EffectiveScopes(nil)
			gap := &ScopeGap{Required: api.Scopes, Held: slices.Clone(held)}
			for _, s := range api.Scopes {
				if !slices.Contains(held, s) {
					gap.Missing = append(gap.Missing, s)
				}
			}
			x.Scopes = gap
		}
		for _, e := range x.Derived.Evidence() {
			r, err := a.st.Get(ctx, e.Seq())
			if err != nil {
				return x, err
			}
			x.Evidence = append(x.Evidence, r)
		}
	}
	return x, nil
}
