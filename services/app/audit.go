package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/audit"
	"github.com/keytrail/keytrail/services/natsauth"
)

// errDiscrepancy: verify-decisions or verify-chain found something; the
// report is printed, the exit status is 1.
var errDiscrepancy = errors.New("discrepancies found")

const auditUsage = `usage: keytrail audit <command> --nats URL [flags]

  history KEY [--tenant T]             every event that bears on the key
  explain KEY [--tenant T] --at RFC3339 | --seq N
                                       the decision as of then, and the events it rests on
  decision REQUEST_ID [--since RFC3339]
                                       why a gateway decided what it did: the logged decision,
                                       re-derived from the history, with the events it rests on
  verify-decisions [--since RFC3339]   re-derive every logged gateway decision; exit 1 on a mismatch
  verify-chain                         check every aggregate's hash chain; exit 1 on a problem

  -o table|json                        tables for people, JSON lines for machines`

// runAudit is `keytrail audit`: questions answered from JetStream alone.
// auditVerbs are audit's commands (the help lists them from here).
var auditVerbs = []string{"history", "explain", "decision", "verify-decisions", "verify-chain"}

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains(auditVerbs, args[0]) {
		return usageError{errors.New(auditUsage)}
	}
	cmd := args[0]
	fs := flag.NewFlagSet("audit "+cmd, flag.ContinueOnError)
	var nf natsFlags
	var lf logFlags
	nf.register(fs, natsauth.Auditor)
	lf.register(fs)
	tenant := fs.String("tenant", "", "the key's tenant (found from the key id when not given)")
	output := fs.String("o", "table", "output: table or json (JSON lines)")
	var at, since timeFlag
	seq := fs.Uint64("seq", 0, "explain as of this stream sequence")
	fs.Var(&at, "at", "explain as of this time, RFC 3339")
	fs.Var(&since, "since", "verify decisions made since this time, RFC 3339")
	fs.SetOutput(stderr)
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return usageError{errors.New("-o must be table or json")}
	}
	wantArg := cmd == "history" || cmd == "explain" || cmd == "decision"
	if wantArg != (len(positional) == 1) || len(positional) > 1 {
		return usageError{errors.New(auditUsage)}
	}
	if err := nf.validate(); err != nil {
		return err
	}
	// An auditor reads a weak stream too, and verify-chain reports it.
	_, nc, st, err := connectRole(ctx, &nf, &lf, io.Discard, store.Config{AcceptWeak: true})
	if err != nil {
		return err
	}
	defer closeConn(nc)
	a := audit.New(st)
	p := printer{w: stdout, json: *output == "json"}
	switch cmd {
	case "history", "explain":
		ref, err := a.Locate(ctx, *tenant, positional[0])
		if errors.Is(err, audit.ErrNoKey) {
			// Say where it looked: the wrong deployment is the usual cause.
			return fmt.Errorf("no key %s in the event log at %s", positional[0], nc.ConnectedUrlRedacted())
		}
		if err != nil {
			return err
		}
		if cmd == "history" {
			h, err := a.History(ctx, ref)
			if err != nil {
				return err
			}
			return p.history(h)
		}
		x, err := a.Explain(ctx, ref, *seq, at.orZero())
		if err != nil {
			return err
		}
		return p.explain(ref, x)
	case "decision":
		rec, err := a.FindDecision(ctx, positional[0], since.orZero())
		if err != nil {
			return err
		}
		x, err := a.ExplainDecision(ctx, rec)
		if err != nil {
			return err
		}
		return finding(p.decision(x), x.Why != "")
	case "verify-decisions":
		rep, err := a.VerifyDecisions(ctx, since.orZero())
		if err != nil {
			return err
		}
		return finding(p.decisions(rep), len(rep.Mismatches) > 0)
	case "verify-chain":
		rep, err := a.VerifyChain(ctx)
		if err != nil {
			return err
		}
		return finding(p.chain(rep), len(rep.Problems) > 0)
	}
	return nil
}

// finding is the outcome of a report once printed: a discrepancy makes the
// exit status 1.
func finding(printErr error, discrepancy bool) error {
	if printErr != nil {
		return printErr
	}
	if discrepancy {
		return errDiscrepancy
	}
	return nil
}

// printer writes audit answers as tables or JSON lines.
type printer struct {
	w    io.Writer
	json bool
}

func (p printer) line(v any) error { return json.NewEncoder(p.w).Encode(v) }

// historyLine is one event of a key's history as `audit history -o json`
// prints it. The payload is printed without the secret's hash.
type historyLine struct {
	Seq       uint64          `json:"seq"`
	At        time.Time       `json:"at"`
	Type      events.Type     `json:"type"`
	Aggregate string          `json:"aggregate"`
	Actor     string          `json:"actor"`
	Reason    string          `json:"reason,omitempty"`
	Command   string          `json:"command_id,omitempty"`
	Data      json.RawMessage `json:"data"`
}

func aggregateName(a events.Aggregate) string {
	if a.Kind == events.KindTenant {
		return "tenant " + a.ID
	}
	return string(a.Kind) + " " + a.ID
}

func payloadJSON(p events.Payload) json.RawMessage {
	b, _ := json.Marshal(p)
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		delete(m, "secret_sha256")
		b, _ = json.Marshal(m)
	}
	return b
}

func (p printer) history(h []events.Recorded) error {
	tw := tabwriter.NewWriter(p.w, 0, 2, 2, ' ', 0)
	if !p.json {
		fmt.Fprintln(tw, "SEQ\tTIME\tEVENT\tAGGREGATE\tACTOR\tREASON")
	}
	for _, r := range h {
		l := historyLine{Seq: r.Seq, At: r.OccurredAt, Type: r.Type, Aggregate: aggregateName(r.Aggregate), Actor: r.Actor,
			Reason: r.Reason, Command: r.CommandID, Data: payloadJSON(r.Data)}
		if p.json {
			if err := p.line(l); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", l.Seq, l.At.Format(time.RFC3339), l.Type, l.Aggregate, l.Actor, l.Reason)
	}
	return tw.Flush()
}

// evidenceLine is an event a decision rests on.
type evidenceLine struct {
	Seq    uint64      `json:"seq"`
	Type   events.Type `json:"type"`
	At     time.Time   `json:"at"`
	Actor  string      `json:"actor"`
	Reason string      `json:"reason,omitempty"`
	Before string      `json:"before_decision"`
	// Fact is what the event set that a decision can turn on: an expiry,
	// a start, scopes, a rate limit, a rotation's grace.
	Fact string `json:"fact,omitempty"`
}

// factOf says what an event set that a decision can turn on ("" for
// events that set none of it).
func factOf(data events.Payload) string {
	var parts []string
	when := func(what string, t *time.Time) {
		if t != nil {
			parts = append(parts, what+" "+t.UTC().Format(time.RFC3339))
		}
	}
	scopes := func(what string, s []string) {
		if len(s) == 0 {
			parts = append(parts, what+" no scopes")
		} else {
			parts = append(parts, what+" scopes "+strings.Join(s, ","))
		}
	}
	rate := func(r *events.RateLimit) {
		if r != nil {
			parts = append(parts, fmt.Sprintf("rate limit %g/s, burst %d", r.PerSecond, r.Burst))
		}
	}
	switch e := data.(type) {
	case events.KeyIssuedV1:
		scopes("key", e.Scopes)
		when("valid from", e.NotBefore)
		when("expires", e.ExpiresAt)
		rate(e.RateLimit)
	case events.KeyUpdatedV1:
		scopes("key", e.Scopes)
		when("expires", e.ExpiresAt)
		rate(e.RateLimit)
	case events.KeyRotatedV1:
		when("the old key works until", &e.GraceUntil)
	case events.APICreatedV1:
		scopes("requires", e.Scopes)
		rate(e.RateLimit)
	case events.APIUpdatedV1:
		scopes("requires", e.Scopes)
		rate(e.RateLimit)
	}
	return strings.Join(parts, "; ")
}

func (p printer) explain(ref audit.KeyRef, x audit.Explanation) error {
	d := &x.Decision
	ev := evidenceLines(x.Evidence, d.Now)
	var also []string
	for _, c := range d.Also() {
		also = append(also, string(c))
	}
	if p.json {
		return p.line(map[string]any{"code": d.Code, "also": also, "key_id": ref.ID, "tenant": ref.Tenant, "user": ref.User,
			"now": d.Now, "seq": d.Seq, "evidence": ev})
	}
	fmt.Fprintf(p.w, "%s for key %s (%s/%s) as of seq %d at %s\n", d.Code, ref.ID, ref.Tenant, ref.User, d.Seq, d.Now.Format(time.RFC3339Nano))
	if len(also) > 0 {
		fmt.Fprintf(p.w, "also: %s\n", strings.Join(also, ", "))
	}
	p.because(ev, "")
	return nil
}

// because prints the events a decision rests on: what, when, by whom, why,
// and how long before the decision (suffix names it).
func (p printer) because(ev []evidenceLine, suffix string) {
	for _, e := range ev {
		by := e.Actor
		if e.Reason != "" {
			by += fmt.Sprintf(" (%q)", e.Reason)
		}
		fact := ""
		if e.Fact != "" {
			fact = " — " + e.Fact
		}
		fmt.Fprintf(p.w, "  because: %s at seq %d, by %s, %s before%s%s\n", e.Type, e.Seq, by, e.Before, suffix, fact)
	}
}

// evidenceLines are the events a decision at now rests on.
func evidenceLines(recs []events.Recorded, now time.Time) []evidenceLine {
	var ev []evidenceLine
	for _, r := range recs {
		ev = append(ev, evidenceLine{Seq: r.Seq, Type: r.Type, At: r.OccurredAt, Actor: r.Actor, Reason: r.Reason,
			Before: now.Sub(r.OccurredAt).Round(time.Millisecond).String(), Fact: factOf(r.Data)})
	}
	return ev
}

func (p printer) decision(x audit.DecisionExplanation) error {
	r := &x.Logged
	ev := evidenceLines(x.Evidence, r.Now)
	verdict := "the history gives the same decision"
	switch {
	case r.Code == string(projections.CodeRateLimited) && x.Why == "" && !x.Unverifiable:
		// The history says VALID: the limit depends on traffic, which it
		// does not hold. Text and JSON say the same.
		verdict = "the history gives VALID: the key was good, and a rate limit (below) denied the request; limits depend on traffic, which the history does not hold"
	case x.Unverifiable:
		verdict = "not re-derivable from the history (it rests on the node's freshness or on the presented secret, which is never logged)"
	case x.Why != "":
		verdict = "MISMATCH: " + x.Why
	}
	if p.json {
		return p.line(map[string]any{"logged": r, "derived": x.Derived.Code, "verdict": verdict, "evidence": ev})
	}
	fmt.Fprintf(p.w, "request %s: %s %s on %s at %s\n", r.RequestID, r.Method, r.Path, r.Node, r.Now.Format(time.RFC3339Nano))
	fmt.Fprintf(p.w, "decided %s", r.Code)
	if len(r.Also) > 0 {
		fmt.Fprintf(p.w, " (also %s)", strings.Join(r.Also, ", "))
	}
	if r.KeyID != "" {
		fmt.Fprintf(p.w, " for key %s of %s/%s", r.KeyID, r.Tenant, r.User)
	}
	if r.API != "" {
		fmt.Fprintf(p.w, " on API %s/%s", r.APITenant, r.API)
	}
	fmt.Fprintf(p.w, ", as of seq %d\n%s\n", r.Seq, verdict)
	p.because(ev, " the request")
	return nil
}

func (p printer) decisions(rep audit.DecisionReport) error {
	if p.json {
		for _, m := range rep.Mismatches {
			if err := p.line(m); err != nil {
				return err
			}
		}
		return p.line(map[string]any{"decisions": rep.Decisions, "matched": rep.Matched, "unverifiable": rep.Unverifiable,
			"mismatched": len(rep.Mismatches), "by_code": rep.ByCode})
	}
	for _, m := range rep.Mismatches {
		fmt.Fprintf(p.w, "MISMATCH decision %d (request %s on %s, key %s): logged %s: %s\n", m.Seq, m.RequestID, m.Node, m.KeyID, m.Logged, m.Why)
	}
	fmt.Fprintf(p.w, "%d decisions: %d matched, %d mismatched, %d not re-derivable (STALE, or the secret itself: MISSING, MALFORMED, NOT_FOUND)\n",
		rep.Decisions, rep.Matched, len(rep.Mismatches), rep.Unverifiable)
	return nil
}

func (p printer) chain(rep audit.ChainReport) error {
	if p.json {
		for _, pr := range rep.Problems {
			if err := p.line(pr); err != nil {
				return err
			}
		}
		return p.line(map[string]any{"messages": rep.Messages, "aggregates": rep.Aggregates, "problems": len(rep.Problems)})
	}
	for _, pr := range rep.Problems {
		fmt.Fprintf(p.w, "PROBLEM seq %d %s: %s\n", pr.Seq, pr.Subject, pr.Problem)
	}
	fmt.Fprintf(p.w, "%d messages, %d aggregates, %d problems\n", rep.Messages, rep.Aggregates, len(rep.Problems))
	return nil
}
