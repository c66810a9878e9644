package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
)

// decisionScan is which part of the decision log a read covers.
type decisionScan struct {
	filter string    // subject filter; all decisions when empty
	since  time.Time // from this time on; all when zero
	from   uint64    // from this decision-stream sequence on (instead of since)
	// progress, when set, is told every progressEvery entries how many
	// have been read of how many the scan covers (0: not known).
	progress func(read, total uint64)
	// sparse: few entries match (one key's): they are fetched one by one
	// from the subject index rather than by a consumer, which first counts
	// every match in the log.
	sparse bool
	// digests: compute each decision's digest (what gateways' checkpoints
	// name it by).
	digests bool
	// checkpoint, when set, hears the gateways' decision checkpoints the
	// scan meets (and says whether to go on); otherwise they are passed
	// over.
	checkpoint func(seq uint64, stored time.Time, subject string, data []byte) bool
}

// entry passes one entry of the decision log to fn, or a decision
// checkpoint to the scan's checkpoint hook; it reports whether to go on.
func (scan *decisionScan) entry(seq uint64, stored time.Time, subject string, data []byte, fn func(l loggedDecision, why string) bool) bool {
	if events.IsDecisionCheckpoint(subject) {
		return scan.checkpoint == nil || scan.checkpoint(seq, stored, subject, data)
	}
	l, why := judgeEntry(seq, stored, subject, data)
	if scan.digests {
		l.digest = events.DigestDecision(data)
	}
	return fn(l, why)
}

// progressEvery is how often a long scan reports its progress.
const progressEvery = 10_000

// eachDecision calls fn with every entry of the decision log the scan
// covers, as the log is now, until fn returns false. why is empty for a
// decision filed where it belongs; otherwise it says what is wrong with the
// entry: not a decision at all, or one filed under another decision's
// subject (which would hide it from a search by key or code).
func (a *Auditor) eachDecision(ctx context.Context, scan decisionScan, fn func(l loggedDecision, why string) bool) error {
	if scan.sparse && scan.filter != "" {
		return a.eachDecisionByGet(ctx, scan, fn)
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if scan.filter != "" {
		cfg.FilterSubjects = []string{scan.filter}
	}
	switch {
	case scan.from > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, scan.from
	case !scan.since.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &scan.since
	}
	js := a.st.JetStream()
	cons, err := js.OrderedConsumer(ctx, events.DecisionStream, cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // no gateway has logged anything
	}
	if err != nil {
		return fmt.Errorf("audit: read decisions: %w", err)
	}
	defer store.DeleteConsumer(js, events.DecisionStream, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("audit: read decisions: %w", err)
	}
	total := info.NumPending
	if total == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("audit: read decisions: %w", err)
	}
	defer it.Stop()
	for n := range total {
		if scan.progress != nil && n > 0 && n%progressEvery == 0 {
			scan.progress(n, total)
		}
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("audit: read decisions: %w", err)
		}
		var seq uint64
		var stored time.Time
		if meta, err := m.Metadata(); err == nil {
			seq, stored = meta.Sequence.Stream, meta.Timestamp
		}
		if !scan.entry(seq, stored, m.Subject(), m.Data(), fn) {
			return nil
		}
	}
	if scan.progress != nil {
		scan.progress(total, total)
	}
	return nil
}

// msgGetAttempt bounds one message get.
const msgGetAttempt = 5 * time.Second

// eachDecisionByGet is eachDecision for a sparse scan: the subjects under
// the filter come from the stream's subject index, then each subject's
// entries one leader get at a time (a literal subject's next entry is found
// without reading the blocks that do not hold it), merged in log order.
func (a *Auditor) eachDecisionByGet(ctx context.Context, scan decisionScan, fn func(l loggedDecision, why string) bool) error {
	js := a.st.JetStream()
	str, err := js.Stream(ctx, events.DecisionStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // no gateway has logged anything
	}
	if err != nil {
		return fmt.Errorf("audit: read decisions: %w", err)
	}
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(scan.filter))
	if err != nil {
		return fmt.Errorf("audit: read decisions: %w", err)
	}
	// One cursor per subject: its next entry, fetched when needed.
	type cursor struct {
		req  store.MsgRequest
		next *jetstream.RawStreamMsg
		done bool
	}
	var cursors []*cursor
	for subj := range info.State.Subjects {
		c := &cursor{req: store.MsgRequest{NextFor: subj, Seq: max(scan.from, 1)}}
		if scan.from == 0 && !scan.since.IsZero() {
			c.req.Seq, c.req.StartTime = 0, &scan.since
		}
		cursors = append(cursors, c)
	}
	fill := func(c *cursor) error {
		if c.next != nil || c.done {
			return nil
		}
		e, err := a.msgGet(ctx, c.req)
		if err != nil {
			return err
		}
		if e == nil {
			c.done = true
			return nil
		}
		c.next, c.req = e, store.MsgRequest{NextFor: c.req.NextFor, Seq: e.Sequence + 1}
		return nil
	}
	for {
		var first *cursor
		for _, c := range cursors {
			if err := fill(c); err != nil {
				return err
			}
			if c.next != nil && (first == nil || c.next.Sequence < first.next.Sequence) {
				first = c
			}
		}
		if first == nil {
			return nil
		}
		e := first.next
		first.next = nil
		if !scan.entry(e.Sequence, e.Time, e.Subject, e.Data, fn) {
			return nil
		}
	}
}

// msgGet asks the decision stream's leader for one message; nil when none
// matches.
func (a *Auditor) msgGet(ctx context.Context, req store.MsgRequest) (*jetstream.RawStreamMsg, error) {
	actx, cancel := context.WithTimeout(ctx, msgGetAttempt)
	defer cancel()
	m, err := store.GetMsg(actx, a.st.JetStream().Conn(), events.DecisionStream, req)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read decisions: %w", err)
	}
	return m, nil
}

// judgeEntry reads one entry of the decision log: why is empty for a
// decision filed where it belongs.
func judgeEntry(seq uint64, stored time.Time, subject string, data []byte) (loggedDecision, string) {
	l := loggedDecision{seq: seq, stored: stored}
	why := ""
	if json.Unmarshal(data, &l.rec) != nil || l.rec.Code == "" {
		l.rec, why = events.DecisionRecord{}, "the entry is not a decision"
	} else if want := events.DecisionSubject(&l.rec); subject != want {
		why = fmt.Sprintf("filed under %s; a decision with this content belongs under %s", subject, want)
	}
	return l, why
}

// ErrNoDecision: no decision with this request id is in the decision log.
var ErrNoDecision = errors.New("audit: no such decision")

// FindDecision returns the logged decision on a request, by the request id
// its answer carried (Keytrail-Request-Id, request_id in a problem).
func (a *Auditor) FindDecision(ctx context.Context, requestID string, since time.Time) (events.DecisionRecord, error) {
	l, err := a.findDecision(ctx, requestID, since)
	return l.rec, err
}

func (a *Auditor) findDecision(ctx context.Context, requestID string, since time.Time) (loggedDecision, error) {
	var found *loggedDecision
	err := a.eachDecision(ctx, decisionScan{since: since, digests: true}, func(l loggedDecision, why string) bool {
		// A decision filed under a subject it does not name (written
		// before the subject layout, or misfiled) is still found by its id.
		if l.rec.Code != "" && l.rec.RequestID == requestID {
			found = &l
			return false
		}
		return true
	})
	switch {
	case err != nil:
		return loggedDecision{}, err
	case found == nil:
		return loggedDecision{}, fmt.Errorf("%w: %s", ErrNoDecision, requestID)
	}
	return *found, nil
}

// ExplainRequest finds the decision on a request (FindDecision), explains
// it (ExplainDecision) and, with a root pinned and gateways signing their
// decisions, says which gateway's checkpoint names it — or that none does.
func (a *Auditor) ExplainRequest(ctx context.Context, requestID string, since time.Time) (DecisionExplanation, error) {
	l, err := a.findDecision(ctx, requestID, since)
	if err != nil {
		return DecisionExplanation{}, err
	}
	x, err := a.ExplainDecision(ctx, l.rec)
	if err != nil {
		return x, err
	}
	gws, err := a.gatewaySigners(ctx)
	if err != nil || gws == nil {
		return x, err
	}
	// The checkpoint comes after the decision, within a second or so.
	until := l.stored.Add(time.Minute)
	err = a.eachDecision(ctx, decisionScan{from: l.seq, filter: events.DecisionCheckpointPrefix + "*",
		checkpoint: func(_ uint64, stored time.Time, subject string, data []byte) bool {
			gws.take(stored, subject, data)
			_, found := gws.signed[l.digest]
			return !found && stored.Before(until)
		}}, func(loggedDecision, string) bool { return true })
	if err != nil {
		return x, err
	}
	switch id, ok := gws.signed[l.digest]; {
	case ok:
		x.SignedBy = id
	case time.Since(l.stored) < a.grace:
		x.Unsigned = "no gateway checkpoint names it yet (it was stored moments ago)"
	default:
		x.Unsigned = "written by no gateway: no decision checkpoint a trusted gateway signed names it"
	}
	return x, nil
}

// DecisionSearch is a search of the decision log.
type DecisionSearch struct {
	events.DecisionQuery
	// Since and Until bound the decisions' times (Until: none when zero).
	Since, Until time.Time
	// Limit is how many decisions to return: the latest that match.
	Limit int
	// Progress, when set, hears how far a long scan is.
	Progress func(read, total uint64)
}

// DecisionPage is what a search found: the latest Limit matching
// decisions, oldest first, and how many matched in all.
type DecisionPage struct {
	Decisions []events.DecisionRecord `json:"decisions"`
	Matched   int                     `json:"matched"`
	// Read is how many entries the server handed over: those under the
	// query's subject filter since Since, not the whole log.
	Read int `json:"read"`
}

// MaxDecisionLimit bounds a search's page.
const MaxDecisionLimit = 10_000

// SearchDecisions finds decisions by tenant, user, key, API and code — the
// server filters on the subject, so a key's decisions are read without
// anyone else's — made between Since and Until. Entries that are not
// decisions filed where they belong are left out (verify-decisions reports
// them).
func (a *Auditor) SearchDecisions(ctx context.Context, q DecisionSearch) (DecisionPage, error) {
	var page DecisionPage
	filter, err := q.Filter()
	if err != nil {
		return page, err
	}
	if q.Limit <= 0 || q.Limit > MaxDecisionLimit {
		return page, fmt.Errorf("limit must be between 1 and %d", MaxDecisionLimit)
	}
	ring := make([]events.DecisionRecord, 0, min(q.Limit, 1024))
	next := 0
	err = a.eachDecision(ctx, decisionScan{filter: filter, since: q.Since, progress: q.Progress, sparse: q.KeyID != ""}, func(l loggedDecision, why string) bool {
		if !q.Until.IsZero() && l.stored.After(q.Until.Add(decisionSkew)) {
			return false // nothing later can be before until
		}
		page.Read++
		r := &l.rec
		if why != "" || r.Now.Before(q.Since) || (!q.Until.IsZero() && r.Now.After(q.Until)) {
			return true
		}
		page.Matched++
		if len(ring) < q.Limit {
			ring = append(ring, *r)
			return true
		}
		ring[next] = *r
		next = (next + 1) % q.Limit
		return true
	})
	page.Decisions = slices.Concat(ring[next:], ring[:next])
	return page, err
}

// decisionSkew is how far a gateway's clock (a decision's now) may be
// from the server's (when it stored the decision): a search past until
// stops once the server stored decisions this long after it.
const decisionSkew = 5 * time.Minute

// pageBudget bounds the time one page may read: past it the page ends
// with what it found, and its cursor goes on from where the read stopped.
const pageBudget = 3 * time.Second

// PageDecisions returns, oldest first, up to limit decisions that q
// selects made between since and until (until zero: no bound), after the
// decision-stream sequence after (a previous page's next; 0: from since).
// next is the cursor of the page that follows, 0 when this one is the
// last. The server filters on the subject: one key's decisions are read
// without anyone else's. A page reads for pageBudget at most and stops
// past until: a page may hold fewer than limit decisions and still have a
// next.
func (a *Auditor) PageDecisions(ctx context.Context, q events.DecisionQuery, since, until time.Time, after uint64, limit int) (page []events.LoggedDecision, next uint64, err error) {
	filter, err := q.Filter()
	if err != nil {
		return nil, 0, err
	}
	if limit <= 0 || limit > MaxDecisionLimit {
		return nil, 0, fmt.Errorf("limit must be between 1 and %d", MaxDecisionLimit)
	}
	scan := decisionScan{filter: filter, since: since, sparse: q.KeyID != ""}
	if after > 0 {
		scan.from = after + 1
	}
	deadline, read := time.Now().Add(pageBudget), 0
	err = a.eachDecision(ctx, scan, func(l loggedDecision, why string) bool {
		r := &l.rec
		if !until.IsZero() && l.stored.After(until.Add(decisionSkew)) {
			next = 0 // nothing later can be before until
			return false
		}
		if read++; read > 1 && time.Now().After(deadline) {
			next = l.seq - 1 // the next page goes on from this one
			return false
		}
		if why != "" || r.Now.Before(since) || (!until.IsZero() && r.Now.After(until)) {
			return true
		}
		page = append(page, events.LoggedDecision{LogSeq: l.seq, DecisionRecord: *r})
		if len(page) == limit {
			next = l.seq
			return false
		}
		return true
	})
	return page, next, err
}
