package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

// UsageCounter counts every decided request by (tenant, user, API, key,
// code) until the reporter takes the window's counts. Counting a kind of
// request seen before allocates nothing: a lock on one of many shards, a
// map lookup by a key of strings the decision already holds, an addition.
type UsageCounter struct {
	seed   maphash.Seed
	shards [64]usageShard
}

type usageKey struct {
	tenant, user, api, key string
	code                   projections.Code
}

type usageCount struct {
	n    uint64
	last time.Time
	idle int // windows in a row without a request: gone after maxIdle
}

type usageShard struct {
	mu sync.Mutex
	m  map[usageKey]*usageCount
}

// maxIdle is how many empty windows a kind of request keeps its entry
// (so that a steady client does not allocate one every window).
const maxIdle = 6

// NewUsageCounter returns an empty counter.
func NewUsageCounter() *UsageCounter {
	u := &UsageCounter{seed: maphash.MakeSeed()}
	for i := range u.shards {
		u.shards[i].m = map[usageKey]*usageCount{}
	}
	return u
}

// Count adds one request decided code at now.
func (u *UsageCounter) Count(tenant, user, api, key string, code projections.Code, now time.Time) {
	k := usageKey{tenant, user, api, key, code}
	h := key
	if h == "" {
		h = api
	}
	s := &u.shards[maphash.String(u.seed, h)%uint64(len(u.shards))]
	s.mu.Lock()
	c := s.m[k]
	if c == nil {
		c = &usageCount{}
		s.m[k] = c
	}
	c.n++
	if now.After(c.last) {
		c.last = now
	}
	s.mu.Unlock()
}

// Take returns the counts since the last Take and starts anew. A request
// counted while Take runs lands in this window or the next, never both.
func (u *UsageCounter) Take() []events.UsageCount {
	var out []events.UsageCount
	for i := range u.shards {
		s := &u.shards[i]
		s.mu.Lock()
		for k, c := range s.m {
			if c.n == 0 {
				if c.idle++; c.idle > maxIdle {
					delete(s.m, k)
				}
				continue
			}
			out = append(out, events.UsageCount{Tenant: k.tenant, User: k.user, API: k.api, Key: k.key, Code: string(k.code), N: c.n, Last: c.last})
			c.n, c.idle = 0, 0
		}
		s.mu.Unlock()
	}
	return out
}

// count is what a finished exchange adds to the usage counts: a decided
// request of a known tenant (the key's, else the API's; both, each its own
// side, for another tenant's key on an API).
func (g *Gateway) count(x *exchange) {
	d := &x.decision
	if g.cfg.Usage == nil || d.Code == "" {
		return
	}
	switch {
	case d.Tenant != "" && x.api.Tenant != "" && d.Tenant != x.api.Tenant:
		// Another tenant's key on this API: each tenant sees its side —
		// the API's owner a foreign key (never its id), the key's owner its
		// key used where it does not belong (never the other's API).
		g.cfg.Usage.Count(x.api.Tenant, "", x.api.ID, "", d.Code, d.Now)
		g.cfg.Usage.Count(d.Tenant, d.User, "", d.KeyID, d.Code, d.Now)
	case d.Tenant != "":
		g.cfg.Usage.Count(d.Tenant, d.User, x.api.ID, d.KeyID, d.Code, d.Now)
	case x.api.Tenant != "":
		g.cfg.Usage.Count(x.api.Tenant, "", x.api.ID, "", d.Code, d.Now)
	}
	// Decided before routing (STALE) has no tenant: Prometheus counts it.
}

// UsageReporter reports a counter's windows to the usage stream.
type UsageReporter struct {
	js      jetstream.JetStream
	counter *UsageCounter
	node    string
	boot    string
	log     *slog.Logger

	// Window is the length of a counting window (events.UsageWindow when
	// zero); it divides a minute, so no window straddles two.
	Window time.Duration
	// Freshness, when set, is the read model's state each report carries
	// (readmodel.Model.Freshness).
	Freshness func() (applied, lag uint64, confirmed time.Time)

	window  uint64    // the last window reported
	start   time.Time // the start of the window being counted
	pending []*events.UsageReport

	reported atomic.Uint64 // parts acknowledged
	lost     atomic.Uint64 // parts given up on (the fold sees the gap)
}

// maxPending bounds the parts kept while the stream is away (an hour of
// windows of a gateway with one part each); past it the oldest are lost,
// and the fold reports their windows as a gap.
const maxPending = 360

// NewUsageReporter returns a reporter for counter, counting from start.
func NewUsageReporter(js jetstream.JetStream, counter *UsageCounter, node string, start time.Time, log *slog.Logger) *UsageReporter {
	b := make([]byte, 8)
	rand.Read(b)
	return &UsageReporter{js: js, counter: counter, node: node, boot: hex.EncodeToString(b), start: start, log: log}
}

// Boot is this process's id in its reports.
func (r *UsageReporter) Boot() string { return r.boot }

// Reported and Lost count report parts acknowledged and given up on.
func (r *UsageReporter) Reported() uint64 { return r.reported.Load() }
func (r *UsageReporter) Lost() uint64     { return r.lost.Load() }

// every is the window length in use.
func (r *UsageReporter) every() time.Duration {
	if r.Window <= 0 || r.Window > events.UsageWindow || time.Minute%r.Window != 0 {
		return events.UsageWindow
	}
	return r.Window
}

// Run closes a window at every multiple of Window until ctx ends, then
// closes the last one, marked final, within DrainTimeout.
func (r *UsageReporter) Run(ctx context.Context) {
	w := r.every()
	for {
		next := r.start.Truncate(w).Add(w)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), DrainTimeout)
			r.Close(drain, time.Now(), true)
			cancel()
			return
		case <-t.C:
		}
		r.Close(ctx, next, false)
	}
}

// Close ends the window being counted at end (final: the process is
// stopping), and reports it with any parts still pending. The windows are
// numbered without a gap; an empty window is reported too.
func (r *UsageReporter) Close(ctx context.Context, end time.Time, final bool) {
	counts := r.counter.Take()
	if !end.After(r.start) {
		end = r.start.Add(time.Millisecond) // a stop at the very start
	}
	r.window++
	var applied, lag uint64
	var confirmed *time.Time
	if r.Freshness != nil {
		a, l, c := r.Freshness()
		applied, lag = a, l
		if !c.IsZero() {
			c = c.UTC()
			confirmed = &c
		}
	}
	parts := max(1, (len(counts)+events.MaxUsageEntries-1)/events.MaxUsageEntries)
	for p := range parts {
		chunk := counts[min(p*events.MaxUsageEntries, len(counts)):min((p+1)*events.MaxUsageEntries, len(counts))]
		r.pending = append(r.pending, &events.UsageReport{Node: r.node, Boot: r.boot, Window: r.window, Start: r.start, End: end,
			Part: p + 1, Parts: parts, Every: r.every().Milliseconds(), Final: final, Counts: slices.Clone(chunk),
			Applied: applied, Lag: lag, Confirmed: confirmed})
	}
	r.start = end
	if over := len(r.pending) - maxPending; over > 0 {
		r.lost.Add(uint64(over))
		r.log.Warn("usage reports lost: the stream has been away too long", "parts", over)
		r.pending = r.pending[over:]
	}
	for len(r.pending) > 0 {
		if err := r.publish(ctx, r.pending[0]); err != nil {
			r.log.Warn("usage report not acknowledged; kept for the next window", "window", r.pending[0].Window, "err", err)
			return
		}
		r.pending = r.pending[1:]
		r.reported.Add(1)
	}
}

// publish sends one part; a part sent again carries the same Msg-Id and is
// stored once.
func (r *UsageReporter) publish(ctx context.Context, rep *events.UsageReport) error {
	data, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	m := nats.NewMsg(events.UsageSubject(r.node))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, events.UsageMsgID(rep))
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = r.js.PublishMsg(actx, m, jetstream.WithExpectStream(events.UsageStream))
	return err
}

// Defaults of the usage stream: reports are kept long enough to rebuild
// the minute rollups, which are kept 7 days.
const DefaultUsageRetention = 8 * 24 * time.Hour

// EnsureUsageStream creates the usage stream if it is missing. Control
// nodes call it; gateways only write to it.
func EnsureUsageStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	return store.EnsureStream(ctx, js, jetstream.StreamConfig{Name: events.UsageStream, Description: "Keytrail gateways' request counts",
		Subjects: []string{events.UsageSubjects}, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		MaxAge: DefaultUsageRetention, Discard: jetstream.DiscardOld, Duplicates: 2 * time.Hour, DenyDelete: true, DenyPurge: true})
}
