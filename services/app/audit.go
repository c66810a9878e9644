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
	"github.com/keytrail/keytrail/services/cli"
	"github.com/keytrail/keytrail/services/natsauth"
)

// errDiscrepancy: verify-decisions or verify-chain found something; the
// report is printed, the exit status is 1.
var errDiscrepancy = errors.New("discrepancies found")

const auditUsage = `usage: keytrail audit <command> --nats URL [flags]

  history KEY [--tenant T]             every event that bears on the key
  explain KEY [--tenant T] --at RFC3339 | --seq N
                                       the decision as of then, and the events it rests on
  decision REQUEST_ID [--since TIME]   why a gateway decided what it did: the logged decision,
                                       re-derived from the history, with the events it rests on
  decisions [--key K] [--user U] [--tenant T] [--api A] [--code C] [--since TIME] [--until TIME] [--limit N]
                                       the latest logged decisions that match (the server filters:
                                       a key's decisions are read without anyone else's)
  verify-decisions [--since RFC3339]   re-derive every logged gateway decision; exit 1 on a mismatch
  verify-chain                         check every aggregate's hash chain; exit 1 on a problem

  -o table|json                        tables for people, JSON lines for machines
  TIME is RFC 3339 or how long ago (24h, 7d); decisions default to --since 24h`

// auditVerbs are audit's commands (the help and the completion list them
// from here).
var auditVerbs = []string{"history", "explain", "decision", "decisions", "verify-decisions", "verify-chain"}

// auditOptions are the flags of one audit command.
type auditOptions struct {
	nats             natsFlags
	log              logFlags
	tenant, output   string
	seq              uint64
	at, since, until cli.TimeFlag
	query            events.DecisionQuery
	limit            int
	grace            time.Duration
}

// registerAudit declares the flags of audit command cmd on fs.
func registerAudit(fs *flag.FlagSet, cmd string) *auditOptions {
	o := &auditOptions{}
	o.nats.register(fs, natsauth.Auditor)
	o.log.register(fs)
	fs.StringVar(&o.tenant, "tenant", "", "the key's tenant (found from the key id when not given)")
	fs.StringVar(&o.output, "o", "table", "output: table or json (JSON lines)")
	switch cmd {
	case "explain":
		fs.Uint64Var(&o.seq, "seq", 0, "explain as of this stream sequence")
		fs.Var(&o.at, "at", "explain as of this time: RFC 3339, or how long ago (24h, 7d)")
	case "decision", "verify-decisions":
		fs.Var(&o.since, "since", "decisions made since this time: RFC 3339, or how long ago (24h, 7d)")
		fs.DurationVar(&o.grace, "unsigned-grace", audit.PendingGrace, "a decision stored this recently may still await its gateway's signed checkpoint (not reported unsigned)")
	case "decisions":
		fs.Var(&o.since, "since", "decisions made since this time: RFC 3339, or how long ago (default 24h)")
		fs.Var(&o.until, "until", "decisions made until this time: RFC 3339, or how long ago")
		fs.StringVar(&o.query.KeyID, "key", "", "the key's decisions")
		fs.StringVar(&o.query.User, "user", "", "the decisions on the keys of this user")
		fs.StringVar(&o.query.API, "api", "", "the decisions on requests for this API")
		fs.StringVar(&o.query.Code, "code", "", "the decisions with this outcome code (EXPIRED, RATE_LIMITED, …)")
		fs.IntVar(&o.limit, "limit", 100, fmt.Sprintf("print at most this many, the latest (at most %d)", audit.MaxDecisionLimit))
	}
	return o
}

// runAudit is `keytrail audit`: questions answered from JetStream alone.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains(auditVerbs, args[0]) {
		return usageError{errors.New(auditUsage)}
	}
	cmd := args[0]
	fs := flag.NewFlagSet("audit "+cmd, flag.ContinueOnError)
	o := registerAudit(fs, cmd)
	fs.SetOutput(stderr)
	positional, err := cli.ParseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if o.output != "table" && o.output != "json" {
		return usageError{errors.New("-o must be table or json")}
	}
	wantArg := cmd == "history" || cmd == "explain" || cmd == "decision"
	if wantArg != (len(positional) == 1) || len(positional) > 1 {
		return usageError{errors.New(auditUsage)}
	}
	if err := o.nats.validate(); err != nil {
		return err
	}
	if cmd == "decisions" {
		o.query.Tenant = o.tenant
		if _, err := o.query.Filter(); err != nil {
			return usageError{err}
		}
		if c := o.query.Code; c != "" {
			if _, ok := projections.OutcomeOf(projections.Code(c)); !ok {
				return usageError{fmt.Errorf("--code %q is not an outcome code (%s)", c, strings.Join(projections.Codes(), ", "))}
			}
		}
		if o.limit < 1 || o.limit > audit.MaxDecisionLimit {
			return usageError{fmt.Errorf("--limit must be between 1 and %d", audit.MaxDecisionLimit)}
		}
	}
	// An auditor reads a weak stream too, and verify-chain reports it.
	_, nc, st, err := connectRole(ctx, &o.nats, &o.log, io.Discard, store.Config{AcceptWeak: true})
	if err != nil {
		return err
	}
	defer closeConn(nc)
	root, err := o.nats.trustKey()
	if err != nil {
		return err
	}
	a := audit.New(st).Trusting(root).SignedWithin(o.grace)
	p := printer{w: stdout, json: o.output == "json"}
	switch cmd {
	case "history", "explain":
		ref, err := a.Locate(ctx, o.tenant, positional[0])
		if errors.Is(err, audit.ErrNoKey) {
			// Say where it looked: the wrong deployment is the usual cause.
			return fmt.Errorf("no key %s in the event log at %s", positional[0], nc.ConnectedUrlRedacted())
		}
		if err != nil {
			return err
		}
		if cmd == "history" {
			h, err := a.History(ctx, ref)
			h = projections.AffectingKey(h, ref.ID)
			if err != nil {
				return err
			}
			return p.history(h)
		}
		x, err := a.Explain(ctx, ref, o.seq, o.at.OrZero())
		if err != nil {
			return err
		}
		return p.explain(ref, x)
	case "decision":
		x, err := a.ExplainRequest(ctx, positional[0], o.since.OrZero())
		if err != nil {
			return err
		}
		return finding(p.decision(x), x.Why != "" || x.Unsigned != "")
	case "decisions":
		search := audit.DecisionSearch{DecisionQuery: o.query, Since: o.since.OrZero(), Until: o.until.OrZero(), Limit: o.limit,
			Progress: func(read, total uint64) {
				switch {
				case total == 0:
					fmt.Fprintf(stderr, "read %d decisions…\n", read)
				case read < total:
					fmt.Fprintf(stderr, "read %d of %d decisions…\n", read, total)
				}
			}}
		if o.since.T == nil {
			search.Since = time.Now().Add(-24 * time.Hour)
		}
		page, err := a.SearchDecisions(ctx, search)
		if err != nil {
			return err
		}
		return p.decisionList(page, search)
	case "verify-decisions":
		rep, err := a.VerifyDecisions(ctx, o.since.OrZero())
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
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", l.Seq, cli.LocalTime(l.At), l.Type, l.Aggregate, l.Actor, l.Reason)
	}
	return tw.Flush()
}

// explainLine is `audit explain -o json`.
type explainLine struct {
	Code     string         `json:"code"`
	Also     []string       `json:"also"`
	KeyID    string         `json:"key_id"`
	Tenant   string         `json:"tenant"`
	User     string         `json:"user"`
	Now      time.Time      `json:"now"`
	Seq      uint64         `json:"seq"`
	Evidence []evidenceLine `json:"evidence"`
	// Policies and Because: the key's policies and what they did.
	Policies []string `json:"policies,omitempty"`
	Because  []string `json:"because,omitempty"`
}

// decisionLine is `audit decision -o json`: the logged decision, what the
// history gives, the verdict and the facts the text prints.
type decisionLine struct {
	Logged   *events.DecisionRecord `json:"logged"`
	Derived  string                 `json:"derived"`
	Verdict  string                 `json:"verdict"`
	Signed   string                 `json:"signed,omitempty"`
	Evidence []evidenceLine         `json:"evidence"`
	Scopes   *audit.ScopeGap        `json:"scopes"`
	Limit    string                 `json:"limit"`
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
	case events.PolicyCreatedV1:
		policyFacts(&parts, e.Scopes, e.RateLimit, e.MaxTTL, e.APIs)
	case events.PolicyUpdatedV1:
		policyFacts(&parts, e.Scopes, e.RateLimit, e.MaxTTL, e.APIs)
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
		return p.line(explainLine{Code: string(d.Code), Also: also, KeyID: ref.ID, Tenant: ref.Tenant, User: ref.User,
			Now: d.Now, Seq: d.Seq, Evidence: ev, Policies: d.Policies(), Because: x.Because})
	}
	fmt.Fprintf(p.w, "%s for key %s (%s/%s) as of seq %d at %s\n", d.Code, ref.ID, ref.Tenant, ref.User, d.Seq, cli.PreciseTime(d.Now))
	if len(also) > 0 {
		fmt.Fprintf(p.w, "also: %s\n", strings.Join(also, ", "))
	}
	if pols := d.Policies(); len(pols) > 0 {
		fmt.Fprintf(p.w, "policies: %s\n", strings.Join(pols, ", "))
	}
	for _, b := range x.Because {
		fmt.Fprintf(p.w, "  %s\n", b)
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

// policyFacts says what a policy grants and limits.
func policyFacts(parts *[]string, scopes []string, r *events.RateLimit, maxTTL string, apis []string) {
	if len(scopes) == 0 {
		*parts = append(*parts, "policy grants no scopes")
	} else {
		*parts = append(*parts, "policy grants "+strings.Join(scopes, ","))
	}
	if r != nil {
		*parts = append(*parts, fmt.Sprintf("rate limit %g/s, burst %d", r.PerSecond, r.Burst))
	}
	if maxTTL != "" {
		*parts = append(*parts, "keys live at most "+maxTTL)
	}
	if len(apis) > 0 {
		*parts = append(*parts, "only on APIs "+strings.Join(apis, ","))
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
	signed := ""
	switch {
	case x.SignedBy != "":
		signed = "signed: named by a checkpoint of gateway signer " + x.SignedBy
	case x.Unsigned != "":
		signed = "NOT SIGNED: " + x.Unsigned
	}
	limit := limitText(r.Limit)
	if p.json {
		return p.line(decisionLine{Logged: r, Derived: string(x.Derived.Code), Verdict: verdict, Signed: signed, Evidence: ev, Scopes: x.Scopes, Limit: limit})
	}
	fmt.Fprintf(p.w, "request %s: %s %s on %s at %s\n", r.RequestID, r.Method, r.Path, r.Node, cli.PreciseTime(r.Now))
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
	if signed != "" {
		fmt.Fprintln(p.w, signed)
	}
	if g := x.Scopes; g != nil {
		fmt.Fprintf(p.w, "  missing scopes: %s (API %s/%s requires %s; the key holds %s)\n", names(g.Missing), r.APITenant, r.API,
			names(g.Required), names(g.Held))
	}
	if limit != "" {
		fmt.Fprintf(p.w, "  limit: %s\n", limit)
	}
	p.because(ev, " the request")
	return nil
}

// names is a list of names for people: comma-separated, "none" when empty.
func names(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// limitText says which rate limit denied a request, its terms, and each
// gateway's share of it then ("" when none did).
func limitText(l *events.DecisionLimit) string {
	if l == nil {
		return ""
	}
	whose := "the key's"
	if l.Source == events.LimitSourceAPI {
		whose = "the API's"
	}
	s := fmt.Sprintf("%s rate limit, %g requests/s with bursts of %d", whose, l.PerSecond, l.Burst)
	if l.PerSecond > 0 {
		s += fmt.Sprintf(" (a full burst refills in %s)", time.Duration(float64(l.Burst)/l.PerSecond*float64(time.Second)).Round(time.Millisecond))
	}
	if l.Gateways > 1 {
		s += fmt.Sprintf(", shared by %d gateways: %.3g requests/s and bursts of %.3g each", l.Gateways,
			l.PerSecond/float64(l.Gateways), max(float64(l.Burst)/float64(l.Gateways), 1))
	}
	return s
}

// decisionList prints the decisions a search found, oldest first.
func (p printer) decisionList(page audit.DecisionPage, q audit.DecisionSearch) error {
	if p.json {
		for _, d := range page.Decisions {
			if err := p.line(d); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(p.w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tCODE\tKEY\tUSER\tAPI\tREQUEST\tNODE\tREQUEST ID")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, d := range page.Decisions {
		code := d.Code
		if len(d.Also) > 0 {
			code += " (+" + strings.Join(d.Also, ",") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s %s\t%s\t%s\n", cli.LocalTime(d.Now), code, dash(d.KeyID), dash(d.User), dash(d.API),
			d.Method, d.Path, d.Node, d.RequestID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	shown := fmt.Sprintf("%d decisions", page.Matched)
	if page.Matched > len(page.Decisions) {
		shown = fmt.Sprintf("the latest %d of %d decisions (--limit)", len(page.Decisions), page.Matched)
	}
	_, err := fmt.Fprintf(p.w, "%s since %s; `keytrail audit decision REQUEST_ID` explains one\n", shown, cli.LocalTime(q.Since))
	return err
}

func (p printer) decisions(rep audit.DecisionReport) error {
	if p.json {
		for _, m := range rep.Mismatches {
			if err := p.line(m); err != nil {
				return err
			}
		}
		return p.line(struct {
			Decisions    int            `json:"decisions"`
			Matched      int            `json:"matched"`
			Unverifiable int            `json:"unverifiable"`
			Mismatched   int            `json:"mismatched"`
			Signed       int            `json:"signed"`
			Pending      int            `json:"pending"`
			ByCode       map[string]int `json:"by_code"`
		}{rep.Decisions, rep.Matched, rep.Unverifiable, len(rep.Mismatches), rep.Signed, rep.Pending, rep.ByCode})
	}
	for _, m := range rep.Mismatches {
		fmt.Fprintf(p.w, "MISMATCH decision %d (request %s on %s, key %s): logged %s: %s\n", m.Seq, m.RequestID, m.Node, m.KeyID, m.Logged, m.Why)
	}
	fmt.Fprintf(p.w, "%d decisions: %d matched, %d mismatched, %d not re-derivable (STALE, or the secret itself: MISSING, MALFORMED, NOT_FOUND)\n",
		rep.Decisions, rep.Matched, len(rep.Mismatches), rep.Unverifiable)
	if rep.Signed+rep.Pending > 0 {
		fmt.Fprintf(p.w, "%d signed by a gateway's checkpoint, %d awaiting theirs (stored in the last %s)\n", rep.Signed, rep.Pending, audit.PendingGrace)
	}
	return nil
}

func (p printer) chain(rep audit.ChainReport) error {
	if p.json {
		for _, pr := range rep.Problems {
			if err := p.line(pr); err != nil {
				return err
			}
		}
		return p.line(struct {
			Messages    uint64 `json:"messages"`
			Aggregates  int    `json:"aggregates"`
			Checkpoints int    `json:"checkpoints"`
			Problems    int    `json:"problems"`
		}{rep.Messages, rep.Aggregates, rep.Checkpoints, len(rep.Problems)})
	}
	for _, pr := range rep.Problems {
		fmt.Fprintf(p.w, "PROBLEM seq %d %s: %s\n", pr.Seq, pr.Subject, pr.Problem)
	}
	fmt.Fprintf(p.w, "%d messages, %d aggregates, %d checkpoints, %d problems\n", rep.Messages, rep.Aggregates, rep.Checkpoints, len(rep.Problems))
	return nil
}
