package projections

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
)

// Grain is the size of a usage bucket.
type Grain string

// The grains, and how long each is kept (relative to the latest report
// folded, not to a clock).
const (
	GrainMinute Grain = "minute"
	GrainHour   Grain = "hour"
	GrainDay    Grain = "day"
)

var grains = [...]struct {
	name       Grain
	size, keep time.Duration
}{
	{GrainMinute, time.Minute, 7 * 24 * time.Hour},
	{GrainHour, time.Hour, 90 * 24 * time.Hour},
	{GrainDay, 24 * time.Hour, 3 * 365 * 24 * time.Hour},
}

// GrainSize is g's bucket size; ok is false for a name that is not a grain.
func GrainSize(g Grain) (time.Duration, bool) {
	for _, x := range grains {
		if x.name == g {
			return x.size, true
		}
	}
	return 0, false
}

// UsageRow is one kind of request counted in a bucket.
type UsageRow struct {
	User string `json:"u,omitempty"`
	API  string `json:"a,omitempty"`
	Key  string `json:"k,omitempty"`
	Code string `json:"c"`
	N    uint64 `json:"n"`
}

type rowKey struct{ user, api, key, code string }

// kindID names one kind of request (user, API, key, code) of a tenant: the
// buckets count kinds by id, and the strings are kept once per tenant.
type kindID uint32

// tenantKinds are a tenant's kinds of request, shared by all its buckets.
type tenantKinds struct {
	ids   map[rowKey]kindID
	kinds []rowKey
	byKey map[string][]kindID
}

func (t *tenantKinds) id(c *events.UsageCount) kindID {
	k := rowKey{c.User, c.API, c.Key, c.Code}
	if id, ok := t.ids[k]; ok {
		return id
	}
	id := kindID(len(t.kinds))
	t.ids[k] = id
	t.kinds = append(t.kinds, k)
	if k.key != "" {
		t.byKey[k.key] = append(t.byKey[k.key], id)
	}
	return id
}

// tenantBucket is one tenant's counts in one bucket, by kind, and by code
// alone (what a tenant's overview asks, answered without the kinds).
type tenantBucket struct {
	counts map[kindID]uint64
	byCode map[string]uint64
}

func (b *tenantBucket) add(id kindID, code string, n uint64) {
	b.counts[id] = satAdd(b.counts[id], n)
	b.byCode[code] = satAdd(b.byCode[code], n)
}

// satAdd adds without wrapping.
func satAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}

// LastUse is the last request that presented a key: when, through which
// gateway and for which API, and the last one it was VALID for.
type LastUse struct {
	At      time.Time `json:"at"`
	Node    string    `json:"node"`
	API     string    `json:"api,omitempty"`
	Code    string    `json:"code"`
	ValidAt time.Time `json:"valid_at,omitzero"`
}

// UsageGap is a stretch of a gateway's requests that no report covers: a
// window missing from its numbering, a window with parts missing, or a
// process that stopped reporting without a final window (killed, or cut
// off for longer than its backlog). Those requests are not counted; they
// are never counted twice.
type UsageGap struct {
	Node  string    `json:"node"`
	Boot  string    `json:"boot"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to,omitzero"` // zero: open (no report since)
	Why   string    `json:"why"`
	Parts int       `json:"missing_parts,omitempty"`
}

// boot is what the fold knows of one gateway process's reports.
type boot struct {
	node string
	// applied, lag and confirmed: the gateway's read model, as its latest
	// report says.
	applied, lag uint64
	confirmed    time.Time
	window       uint64    // the highest window seen
	end          time.Time // its end
	seen         time.Time // when the server stored its latest report
	every        time.Duration
	final        bool
	windows      map[uint64]*windowParts // the recent windows' parts
}

// windowParts are the parts of one window folded so far.
type windowParts struct {
	start, end time.Time
	parts      int
	got        map[int]bool
}

// keepWindows is how many recent windows of a process the fold remembers
// parts of: more than a gateway's backlog (an hour) and the stream's
// duplicate window (two hours) cover.
const keepWindows = 1000

// Usage is the gateways' usage reports folded into minute, hour and day
// buckets per tenant, each key's last use, and the gaps. It is a pure fold
// of the usage stream: Apply a report with its stream sequence.
type Usage struct {
	// Seq is the last usage-stream sequence folded.
	Seq     uint64
	buckets [len(grains)]map[int64]map[string]*tenantBucket
	last    map[string]map[string]*keyUse // tenant → key → its use
	kinds   map[string]*tenantKinds
	boots   map[string]*boot
	gaps    []UsageGap
	latest  time.Time // the latest window end folded
	// Skipped counts reports that were not valid (counted, never folded).
	Skipped uint64
}

// NewUsage returns an empty fold.
func NewUsage() *Usage {
	u := &Usage{last: map[string]map[string]*keyUse{}, boots: map[string]*boot{}, kinds: map[string]*tenantKinds{}}
	for i := range u.buckets {
		u.buckets[i] = map[int64]map[string]*tenantBucket{}
	}
	return u
}

// The span around its stored time a report's window may end in: a
// gateway's clock may be a little ahead, and a gateway cut off sends its
// backlog (an hour at most) late. Past it the report is skipped — a clock
// far off, or a forgery — never folded: its times would move the buckets'
// retention and every gateway's silence.
const (
	maxReportAhead  = time.Minute
	maxReportBehind = 2 * time.Hour
	// maxCount bounds one count of one window (a gateway serves far fewer
	// requests in 10 s): totals cannot wrap.
	maxCount = 1 << 40
)

// Apply folds the report at stream sequence seq, stored by the server at
// stored (the message's timestamp: the fold's clock, the same on every
// node and on every replay). A part already folded (the same process,
// window and part) is ignored: a report is counted once even if the stream
// held it twice.
func (u *Usage) Apply(seq uint64, stored time.Time, r *events.UsageReport) error {
	if seq <= u.Seq {
		return nil // folded already
	}
	u.Seq = seq
	if err := u.check(stored, r); err != nil {
		u.Skipped++
		return err
	}
	b := u.boots[r.Boot]
	if b == nil {
		b = &boot{node: r.Node, windows: map[uint64]*windowParts{}}
		u.boots[r.Boot] = b
	}
	b.seen = stored
	if r.Applied >= b.applied {
		b.applied, b.lag = r.Applied, r.Lag
		if r.Confirmed != nil {
			b.confirmed = *r.Confirmed
		}
	}
	if !b.newPart(r, &u.gaps) {
		return nil
	}
	for i := range r.Counts {
		c := &r.Counts[i]
		u.add(r.Start, c.Tenant, u.kindsOf(c.Tenant).id(c), c.Code, c.N)
		if c.Key != "" {
			u.used(c, r.Start, r.Node)
		}
	}
	if stored.After(u.latest) {
		minute := !stored.Truncate(time.Minute).Equal(u.latest.Truncate(time.Minute))
		u.latest = stored
		if minute {
			u.prune()
		}
	}
	return nil
}

// check refuses a report that is not valid, whose window ends too far from
// when the server stored it, or that counts what no gateway counts.
func (u *Usage) check(stored time.Time, r *events.UsageReport) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.End.After(stored.Add(maxReportAhead)) || r.End.Before(stored.Add(-maxReportBehind)) {
		return fmt.Errorf("usage report %s/%s window %d ends at %s, stored at %s: the gateway's clock is off",
			r.Node, r.Boot, r.Window, r.End.UTC().Format(time.RFC3339), stored.UTC().Format(time.RFC3339))
	}
	for _, c := range r.Counts {
		if _, ok := OutcomeOf(Code(c.Code)); !ok || c.N > maxCount {
			return fmt.Errorf("usage report %s/%s window %d: a count of %d %q", r.Node, r.Boot, r.Window, c.N, c.Code)
		}
	}
	return nil
}

// kindsOf is tenant's kinds, made when first needed.
func (u *Usage) kindsOf(tenant string) *tenantKinds {
	t := u.kinds[tenant]
	if t == nil {
		t = &tenantKinds{ids: map[rowKey]kindID{}, byKey: map[string][]kindID{}}
		u.kinds[tenant] = t
	}
	return t
}

// add counts n requests of kind id at start in every grain's bucket.
func (u *Usage) add(start time.Time, tenant string, id kindID, code string, n uint64) {
	for g := range grains {
		at := start.Truncate(grains[g].size).Unix()
		tb := u.buckets[g][at]
		if tb == nil {
			tb = map[string]*tenantBucket{}
			u.buckets[g][at] = tb
		}
		t := tb[tenant]
		if t == nil {
			t = &tenantBucket{counts: map[kindID]uint64{}, byCode: map[string]uint64{}}
			tb[tenant] = t
		}
		t.add(id, code, n)
	}
}

// newPart records r's part, and reports whether it is new. A window after
// one that is missing opens a gap; a window forgotten with parts missing
// too.
func (b *boot) newPart(r *events.UsageReport, gaps *[]UsageGap) bool {
	if r.Window+keepWindows <= b.window {
		return false // older than anything a sender still retries
	}
	if r.Window > b.window {
		if b.window > 0 && r.Window > b.window+1 {
			*gaps = append(*gaps, UsageGap{Node: r.Node, Boot: r.Boot, From: b.end, To: r.Start,
				Why: fmt.Sprintf("windows %d to %d were not reported", b.window+1, r.Window-1)})
		}
		b.window, b.end, b.final, b.every = r.Window, r.End, r.Final, time.Duration(r.Every)*time.Millisecond
		for w, p := range b.windows {
			if w+keepWindows <= b.window {
				if len(p.got) < p.parts {
					*gaps = append(*gaps, p.gap(b.node, r.Boot))
				}
				delete(b.windows, w)
			}
		}
	}
	p := b.windows[r.Window]
	if p == nil {
		p = &windowParts{start: r.Start, end: r.End, parts: r.Parts, got: map[int]bool{}}
		b.windows[r.Window] = p
	}
	if p.got[r.Part] {
		return false
	}
	p.got[r.Part] = true
	return true
}

func (p *windowParts) gap(node, bootID string) UsageGap {
	return UsageGap{Node: node, Boot: bootID, From: p.start, To: p.end, Why: "a window's parts are missing", Parts: p.parts - len(p.got)}
}

// Gaps are the stretches no report covers, as of the latest report: the
// recorded ones, windows still missing parts (but the newest, whose parts
// may be on their way), and processes silent for three windows without a
// final one.
func (u *Usage) Gaps() []UsageGap {
	out := slices.Clone(u.gaps)
	for id, b := range u.boots {
		for w, p := range b.windows {
			if w < b.window && len(p.got) < p.parts {
				out = append(out, p.gap(b.node, id))
			}
		}
		if !b.final && b.seen.Before(u.latest.Add(-3*b.every)) {
			out = append(out, UsageGap{Node: b.node, Boot: id, From: b.end,
				Why: "the gateway stopped reporting without a final window (killed, or cut off): up to one window of its requests is not counted"})
		}
	}
	slices.SortFunc(out, func(a, b UsageGap) int { return cmp.Or(a.From.Compare(b.From), cmp.Compare(a.Node, b.Node)) })
	return out
}

// Gateway is one gateway process as its reports tell it: its read model
// when it last reported (Applied, Lag, Confirmed: what it verifies with),
// when that was, and whether it stopped cleanly.
type Gateway struct {
	Node      string    `json:"node"`
	Boot      string    `json:"boot"`
	Applied   uint64    `json:"applied"`
	Lag       uint64    `json:"lag"`
	Confirmed time.Time `json:"confirmed,omitempty"`
	Reported  time.Time `json:"reported"`
	Stopped   bool      `json:"stopped"`
	// Silent: no report for three windows, without a final one.
	Silent bool `json:"silent"`
}

// Gateways are the gateway processes that reported, the latest of each
// node first, newest reports first.
func (u *Usage) Gateways() []Gateway {
	latest := map[string]Gateway{}
	for id, b := range u.boots {
		g := Gateway{Node: b.node, Boot: id, Applied: b.applied, Lag: b.lag, Confirmed: b.confirmed, Reported: b.seen, Stopped: b.final,
			Silent: !b.final && b.seen.Before(u.latest.Add(-3*b.every))}
		if cur, ok := latest[b.node]; !ok || g.Reported.After(cur.Reported) {
			latest[b.node] = g
		}
	}
	out := make([]Gateway, 0, len(latest))
	for _, g := range latest {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b Gateway) int { return cmp.Or(b.Reported.Compare(a.Reported), cmp.Compare(a.Node, b.Node)) })
	return out
}

// keyUse is a key's last use and recent tally.
type keyUse struct {
	LastUse
	tally keyTally
}

func (u *Usage) used(c *events.UsageCount, start time.Time, node string) {
	keys := u.last[c.Tenant]
	if keys == nil {
		keys = map[string]*keyUse{}
		u.last[c.Tenant] = keys
	}
	l := keys[c.Key]
	if l == nil {
		l = &keyUse{tally: keyTally{hours: map[int64]uint64{}, days: map[int64]uint64{}}}
		keys[c.Key] = l
	}
	if c.Last.After(l.At) {
		l.At, l.Node, l.API, l.Code = c.Last, node, c.API, c.Code
	}
	if c.Code == string(CodeValid) && c.Last.After(l.ValidAt) {
		l.ValidAt = c.Last
	}
	l.tally.add(start, c.N)
}

// prune drops the buckets older than their grain keeps, the tallies'
// old hours and days, and what it knows of processes silent for longer
// than the minute buckets are kept (their gap is kept).
func (u *Usage) prune() {
	for _, keys := range u.last {
		for _, k := range keys {
			k.tally.prune(u.latest)
		}
	}
	for id, b := range u.boots {
		if b.seen.Before(u.latest.Add(-grains[0].keep)) {
			if !b.final {
				u.gaps = append(u.gaps, UsageGap{Node: b.node, Boot: id, From: b.end,
					Why: "the gateway stopped reporting without a final window (killed, or cut off): up to one window of its requests is not counted"})
			}
			delete(u.boots, id)
		}
	}
	u.gaps = slices.DeleteFunc(u.gaps, func(g UsageGap) bool { return g.From.Before(u.latest.Add(-grains[len(grains)-1].keep)) })
	for g := range grains {
		cut := u.latest.Add(-grains[g].keep).Unix()
		for at := range u.buckets[g] {
			if at < cut {
				delete(u.buckets[g], at)
			}
		}
	}
}

// keyTally is a key's recent counts, for its 24 h and 30 d totals: hours
// and days, kept a little longer than the totals need.
type keyTally struct {
	hours map[int64]uint64
	days  map[int64]uint64
}

func (k *keyTally) add(at time.Time, n uint64) {
	k.hours[at.Truncate(time.Hour).Unix()] += n
	k.days[at.Truncate(24*time.Hour).Unix()] += n
}

func (k *keyTally) prune(latest time.Time) {
	for h := range k.hours {
		if h < latest.Add(-25*time.Hour).Unix() {
			delete(k.hours, h)
		}
	}
	for d := range k.days {
		if d < latest.Add(-31*24*time.Hour).Unix() {
			delete(k.days, d)
		}
	}
}

// UsageQuery selects and groups counts of one tenant.
type UsageQuery struct {
	Tenant               string
	User, API, Key, Code string // "": any
	GroupBy              string // "code", "key", "api", "user"; "": one series
	Grain                Grain
	Since, Until         time.Time
}

// UsagePoint is one bucket's count (only buckets with requests are
// listed).
type UsagePoint struct {
	Start time.Time `json:"start"`
	N     uint64    `json:"n"`
}

// UsageSeries is one group's counts.
type UsageSeries struct {
	Group   string       `json:"group,omitempty"`
	Total   uint64       `json:"total"`
	Buckets []UsagePoint `json:"buckets"`
}

// UsageAnswer is what a query found, largest series first.
type UsageAnswer struct {
	Grain  Grain         `json:"bucket"`
	Since  time.Time     `json:"since"`
	Until  time.Time     `json:"until"`
	Total  uint64        `json:"total"`
	Series []UsageSeries `json:"series"`
}

// GroupBys are the values UsageQuery.GroupBy takes.
var GroupBys = []string{"code", "key", "api", "user"}

// Query answers q from the buckets of q.Grain between Since and Until.
func (u *Usage) Query(q UsageQuery) (UsageAnswer, error) {
	gi := slices.IndexFunc(grains[:], func(g struct {
		name       Grain
		size, keep time.Duration
	}) bool {
		return g.name == q.Grain
	})
	if gi < 0 {
		return UsageAnswer{}, fmt.Errorf("bucket %q: want minute, hour or day", q.Grain)
	}
	if q.GroupBy != "" && !slices.Contains(GroupBys, q.GroupBy) {
		return UsageAnswer{}, fmt.Errorf("group_by %q: want code, key, api or user", q.GroupBy)
	}
	size := grains[gi].size
	ans := UsageAnswer{Grain: q.Grain, Since: q.Since.Truncate(size), Until: q.Until}
	series := map[string]*UsageSeries{}
	add := func(g string, at time.Time, n uint64) {
		if n == 0 {
			return
		}
		s := series[g]
		if s == nil {
			s = &UsageSeries{Group: g}
			series[g] = s
		}
		s.Total += n
		ans.Total += n
		if k := len(s.Buckets); k > 0 && s.Buckets[k-1].Start.Equal(at) {
			s.Buckets[k-1].N += n
		} else {
			s.Buckets = append(s.Buckets, UsagePoint{Start: at.UTC(), N: n})
		}
	}
	kinds := u.kinds[q.Tenant]
	if kinds == nil {
		return ans, nil
	}
	// The kinds the query reads: those of its key, or all of them; nil when
	// the buckets' totals by code answer it.
	var ids []kindID
	switch {
	case q.Key != "":
		ids = kinds.byKey[q.Key]
		if len(ids) == 0 {
			return ans, nil
		}
	case q.User != "" || q.API != "" || (q.GroupBy != "" && q.GroupBy != "code"):
		ids = make([]kindID, len(kinds.kinds))
		for i := range ids {
			ids[i] = kindID(i)
		}
	}
	if ids != nil {
		ids = slices.DeleteFunc(slices.Clone(ids), func(id kindID) bool {
			k := &kinds.kinds[id]
			return (q.User != "" && k.user != q.User) || (q.API != "" && k.api != q.API) || (q.Code != "" && k.code != q.Code)
		})
	}
	var want []bool // ids as a set, to walk a bucket with
	if ids != nil {
		want = make([]bool, len(kinds.kinds))
		for _, id := range ids {
			want[id] = true
		}
	}
	group := func(k *rowKey) string {
		switch q.GroupBy {
		case "code":
			return k.code
		case "key":
			return k.key
		case "api":
			return k.api
		case "user":
			return k.user
		}
		return ""
	}
	for at := ans.Since; at.Before(q.Until); at = at.Add(size) {
		t := u.buckets[gi][at.Unix()][q.Tenant]
		if t == nil {
			continue
		}
		if ids == nil { // by code, from the totals
			for code, n := range t.byCode {
				if q.Code != "" && code != q.Code {
					continue
				}
				g := ""
				if q.GroupBy == "code" {
					g = code
				}
				add(g, at, n)
			}
			continue
		}
		if len(ids) > len(t.counts) { // fewer in the bucket than asked for: walk the bucket
			for id, n := range t.counts {
				if want[id] {
					add(group(&kinds.kinds[id]), at, n)
				}
			}
			continue
		}
		for _, id := range ids {
			add(group(&kinds.kinds[id]), at, t.counts[id])
		}
	}
	for _, s := range series {
		ans.Series = append(ans.Series, *s)
	}
	slices.SortFunc(ans.Series, func(a, b UsageSeries) int {
		return cmp.Or(cmp.Compare(b.Total, a.Total), cmp.Compare(a.Group, b.Group))
	})
	return ans, nil
}

// KeyUse is a key's last use and its requests in the 24 hours and 30 days
// before now.
type KeyUse struct {
	LastUse
	Used    bool   `json:"-"`
	Last24h uint64 `json:"requests_24h"`
	Last30d uint64 `json:"requests_30d"`
}

// KeyUse is what the fold knows of a key's use as of now.
func (u *Usage) KeyUse(tenant, key string, now time.Time) KeyUse {
	l := u.last[tenant][key]
	if l == nil {
		return KeyUse{}
	}
	ku := KeyUse{LastUse: l.LastUse, Used: true}
	for h, n := range l.tally.hours {
		if at := time.Unix(h, 0); !at.Before(now.Add(-24*time.Hour).Truncate(time.Hour)) && at.Before(now) {
			ku.Last24h += n
		}
	}
	for d, n := range l.tally.days {
		if at := time.Unix(d, 0); !at.Before(now.Add(-30*24*time.Hour).Truncate(24*time.Hour)) && at.Before(now) {
			ku.Last30d += n
		}
	}
	return ku
}

// usageSnapshot is the fold as a control node saves it, so that a restart
// folds only the reports after Seq.
type usageSnapshot struct {
	Seq     uint64             `json:"seq"`
	Skipped uint64             `json:"skipped,omitempty"`
	Latest  time.Time          `json:"latest"`
	Buckets [][]snapshotBucket `json:"buckets"` // per grain
	Keys    []snapshotKey      `json:"keys"`
	Boots   []snapshotBoot     `json:"boots"`
	Gaps    []UsageGap         `json:"gaps,omitempty"`
}

type snapshotBucket struct {
	At     int64      `json:"at"`
	Tenant string     `json:"t"`
	Rows   []UsageRow `json:"rows"`
}

type snapshotKey struct {
	Tenant string           `json:"t"`
	Key    string           `json:"k"`
	Use    LastUse          `json:"use"`
	Hours  map[int64]uint64 `json:"hours"`
	Days   map[int64]uint64 `json:"days"`
}

type snapshotBoot struct {
	ID      string                `json:"id"`
	Node    string                `json:"node"`
	Window  uint64                `json:"window"`
	End     time.Time             `json:"end"`
	Final   bool                  `json:"final,omitempty"`
	Every   time.Duration         `json:"every"`
	Seen    time.Time             `json:"seen"`
	Windows []snapshotWindowParts `json:"windows,omitempty"`
	Applied uint64                `json:"applied,omitempty"`
	Lag     uint64                `json:"lag,omitempty"`
	Confirm time.Time             `json:"confirmed,omitzero"`
}

type snapshotWindowParts struct {
	Window uint64    `json:"w"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Parts  int       `json:"parts"`
	Got    []int     `json:"got"`
}

// MarshalJSON writes the fold for a snapshot.
func (u *Usage) MarshalJSON() ([]byte, error) {
	s := usageSnapshot{Seq: u.Seq, Skipped: u.Skipped, Latest: u.latest, Gaps: u.gaps, Buckets: make([][]snapshotBucket, len(grains))}
	for g := range grains {
		for at, tenants := range u.buckets[g] {
			for t, b := range tenants {
				kinds := u.kinds[t]
				rows := make([]UsageRow, 0, len(b.counts))
				for id, n := range b.counts {
					k := kinds.kinds[id]
					rows = append(rows, UsageRow{k.user, k.api, k.key, k.code, n})
				}
				s.Buckets[g] = append(s.Buckets[g], snapshotBucket{at, t, rows})
			}
		}
	}
	for t, keys := range u.last {
		for k, ku := range keys {
			s.Keys = append(s.Keys, snapshotKey{t, k, ku.LastUse, ku.tally.hours, ku.tally.days})
		}
	}
	for id, b := range u.boots {
		sb := snapshotBoot{ID: id, Node: b.node, Window: b.window, End: b.end, Final: b.final, Every: b.every, Seen: b.seen,
			Applied: b.applied, Lag: b.lag, Confirm: b.confirmed}
		for w, p := range b.windows {
			wp := snapshotWindowParts{Window: w, Start: p.start, End: p.end, Parts: p.parts}
			for part := range p.got {
				wp.Got = append(wp.Got, part)
			}
			sb.Windows = append(sb.Windows, wp)
		}
		s.Boots = append(s.Boots, sb)
	}
	return json.Marshal(s)
}

// UnmarshalJSON reads a fold written by MarshalJSON.
func (u *Usage) UnmarshalJSON(data []byte) error {
	var s usageSnapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	if len(s.Buckets) != len(grains) {
		return fmt.Errorf("usage snapshot: %d grains, want %d", len(s.Buckets), len(grains))
	}
	*u = *NewUsage()
	u.Seq, u.Skipped, u.latest, u.gaps = s.Seq, s.Skipped, s.Latest, s.Gaps
	for g := range grains {
		for _, b := range s.Buckets[g] {
			tenants := u.buckets[g][b.At]
			if tenants == nil {
				tenants = map[string]*tenantBucket{}
				u.buckets[g][b.At] = tenants
			}
			tb := &tenantBucket{counts: make(map[kindID]uint64, len(b.Rows)), byCode: map[string]uint64{}}
			kinds := u.kindsOf(b.Tenant)
			for _, r := range b.Rows {
				tb.add(kinds.id(&events.UsageCount{User: r.User, API: r.API, Key: r.Key, Code: r.Code}), r.Code, r.N)
			}
			tenants[b.Tenant] = tb
		}
	}
	for _, k := range s.Keys {
		keys := u.last[k.Tenant]
		if keys == nil {
			keys = map[string]*keyUse{}
			u.last[k.Tenant] = keys
		}
		ku := &keyUse{LastUse: k.Use, tally: keyTally{hours: k.Hours, days: k.Days}}
		if ku.tally.hours == nil {
			ku.tally.hours = map[int64]uint64{}
		}
		if ku.tally.days == nil {
			ku.tally.days = map[int64]uint64{}
		}
		keys[k.Key] = ku
	}
	for _, sb := range s.Boots {
		b := &boot{node: sb.Node, window: sb.Window, end: sb.End, final: sb.Final, every: sb.Every, seen: sb.Seen, windows: map[uint64]*windowParts{},
			applied: sb.Applied, lag: sb.Lag, confirmed: sb.Confirm}
		for _, wp := range sb.Windows {
			p := &windowParts{start: wp.Start, end: wp.End, parts: wp.Parts, got: map[int]bool{}}
			for _, part := range wp.Got {
				p.got[part] = true
			}
			b.windows[wp.Window] = p
		}
		u.boots[sb.ID] = b
	}
	return nil
}
