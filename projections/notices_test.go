package projections

import (
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
)

// noticeWorld is a catalog with acme/bob and keys, and a fake clock that
// the test moves; notices "sent" are folded back as the stream would.
type noticeWorld struct {
	t    *testing.T
	h    *chain
	c    *Catalog
	sent NoticesSent
	now  time.Time
}

func newNoticeWorld(t *testing.T) *noticeWorld {
	w := &noticeWorld{t: t, h: &chain{}, c: NewCatalog(), sent: NoticesSent{}, now: t0}
	w.apply(w.h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"}))
	w.apply(w.h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{}))
	return w
}

func (w *noticeWorld) apply(r events.Recorded) {
	if err := w.c.Apply(r); err != nil {
		w.t.Fatal(err)
	}
}

func (w *noticeWorld) key(i int, expires *time.Time) {
	w.apply(w.h.add("acme", events.KeyAggregate("bob", keyID(i)), w.now, events.KeyIssuedV1{SecretHash: events.SecretHash{byte(i)}, ExpiresAt: expires}))
}

// at moves the clock and returns the notices due, marking them sent.
func (w *noticeWorld) at(now time.Time) []string {
	w.now = now
	var got []string
	for _, n := range DueNotices(w.c, w.sent, now, nil) {
		w.sent[n.ID] = true
		got = append(got, n.Type+" "+n.Before)
	}
	return got
}

func expect(t *testing.T, when string, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %q, want %q", when, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: %q, want %q", when, got, want)
		}
	}
}

const day = 24 * time.Hour

// TestExpiryNoticesAtEachThreshold: 30, 7 and 1 day before, then expired —
// each once, however often the clock is asked.
func TestExpiryNoticesAtEachThreshold(t *testing.T) {
	w := newNoticeWorld(t)
	exp := t0.Add(60 * day)
	w.key(1, &exp)
	expect(t, "at issue", w.at(t0))
	expect(t, "31 days before", w.at(exp.Add(-31*day)))
	expect(t, "30 days before", w.at(exp.Add(-30*day)), "key.expiring 30d")
	expect(t, "asked again", w.at(exp.Add(-30*day+time.Minute)))
	expect(t, "7 days before", w.at(exp.Add(-7*day)), "key.expiring 7d")
	expect(t, "a day before", w.at(exp.Add(-day)), "key.expiring 1d")
	expect(t, "at the expiry", w.at(exp), "key.expired ")
	expect(t, "after", w.at(exp.Add(day)))
}

// TestExpiryNoticesAfterDowntime: a scheduler down across thresholds tells
// only the nearest one passed (or that the key expired), never a stale
// "30 days" three days before the end.
func TestExpiryNoticesAfterDowntime(t *testing.T) {
	w := newNoticeWorld(t)
	exp := t0.Add(60 * day)
	w.key(1, &exp)
	expect(t, "3 days before, nothing sent yet", w.at(exp.Add(-3*day)), "key.expiring 7d")
	expect(t, "then a day before", w.at(exp.Add(-day)), "key.expiring 1d")
	w.key(2, &exp)
	expect(t, "past the expiry: both keys, and never the thresholds the second missed", w.at(exp.Add(time.Hour)), "key.expired ", "key.expired ")
}

// TestExpiryNoticesRearmAndCancel: a new expiry re-arms the thresholds; a
// rotation's grace end counts as the end; a revoked key is told nothing.
func TestExpiryNoticesRearmAndCancel(t *testing.T) {
	w := newNoticeWorld(t)
	exp := t0.Add(10 * day)
	w.key(1, &exp)
	expect(t, "10 days before", w.at(t0), "key.expiring 30d")
	later := exp.Add(50 * day)
	w.apply(w.h.add("acme", events.KeyAggregate("bob", keyID(1)), t0, events.KeyUpdatedV1{ExpiresAt: &later}))
	expect(t, "extended to 60 days", w.at(t0.Add(time.Hour)))
	expect(t, "30 days before the new expiry", w.at(later.Add(-30*day)), "key.expiring 30d")
	w.apply(w.h.add("acme", events.KeyAggregate("bob", keyID(1)), w.now, events.KeyRotatedV1{Successor: keyID(2), GraceUntil: w.now.Add(12 * time.Hour)}))
	expect(t, "rotated with 12 hours of grace", w.at(w.now.Add(time.Minute)), "key.expiring 1d")
	w.apply(w.h.add("acme", events.KeyAggregate("bob", keyID(1)), w.now, events.KeyRevokedV1{}))
	expect(t, "revoked", w.at(w.now.Add(13*time.Hour)))
	w.key(3, nil)
	expect(t, "a key that never expires", w.at(w.now.Add(1000*day)))
}

// TestNoticeIDsAreTheSameEverywhere: two nodes deriving from the same log
// at different moments past the same threshold name the notice alike (its
// Msg-Id), so it is stored once.
func TestNoticeIDsAreTheSameEverywhere(t *testing.T) {
	w := newNoticeWorld(t)
	exp := t0.Add(60 * day)
	w.key(1, &exp)
	a := DueNotices(w.c, NoticesSent{}, exp.Add(-7*day), nil)
	b := DueNotices(w.c, NoticesSent{}, exp.Add(-6*day), nil)
	if len(a) != 1 || len(b) != 1 || a[0].ID != b[0].ID {
		t.Fatalf("%+v\n%+v", a, b)
	}
	if s := events.NoticeSubject(&a[0]); s != "keytrail.ntc.acme.key.expiring."+keyID(1) {
		t.Fatalf("subject %s", s)
	}
}

// used folds one window of requests with key i into u, as a gateway would
// report it at the moment at.
func (w *noticeWorld) used(u *Usage, seq uint64, i int, code string, n uint64, at time.Time) {
	w.t.Helper()
	start := at.Truncate(events.UsageWindow)
	r := &events.UsageReport{Node: "gw-1", Boot: "b1", Window: seq, Start: start, End: start.Add(events.UsageWindow), Part: 1, Parts: 1,
		Every: events.UsageWindow.Milliseconds(), Counts: []events.UsageCount{{Tenant: "acme", User: "bob", API: "orders", Key: keyID(i), Code: code, N: n, Last: at}}}
	if err := u.Apply(seq, r.End, r); err != nil {
		w.t.Fatal(err)
	}
}

func (w *noticeWorld) usageNotices(u *Usage, now time.Time) []events.Notice {
	got := DueUsageNotices(w.c, u, w.sent, now, UsageNoticeConfig{})
	for _, n := range got {
		w.sent[n.ID] = true
	}
	return got
}

func types(ns []events.Notice) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Type)
	}
	return out
}

// TestBlockedKeysAndDenialsStarted: a user disabled while two of their
// keys were in use is one keys.blocked notice (2 keys, USER_DISABLED, the
// event); a key whose requests turn from VALID to denied is told
// key.denials-started with the code and the causing event; both once.
func TestBlockedKeysAndDenialsStarted(t *testing.T) {
	w := newNoticeWorld(t)
	u := NewUsage()
	w.key(1, nil)
	w.key(2, nil)
	w.key(3, nil) // never used: not blocked
	now := t0.Add(time.Hour)
	w.used(u, 1, 1, "VALID", 5, now.Add(-30*time.Minute))
	w.used(u, 2, 2, "VALID", 5, now.Add(-20*time.Minute))
	expect(t, "all well", types(w.usageNotices(u, now)))
	disabled := w.h.add("acme", events.UserAggregate("bob"), now, events.UserDisabledV1{})
	w.apply(disabled)
	got := w.usageNotices(u, now.Add(time.Minute))
	if len(got) != 1 || got[0].Type != events.NoticeKeysBlocked || got[0].Keys != 2 || got[0].Code != "USER_DISABLED" ||
		got[0].CauseSeq != disabled.Seq || got[0].User != "bob" {
		t.Fatalf("after the disable: %+v", got)
	}
	// Key 1's next requests are denied: its denials started.
	w.used(u, 3, 1, "USER_DISABLED", 3, now.Add(2*time.Minute))
	got = w.usageNotices(u, now.Add(3*time.Minute))
	if len(got) != 1 || got[0].Type != events.NoticeDenialsStarted || got[0].KeyID != keyID(1) || got[0].Code != "USER_DISABLED" ||
		got[0].CauseSeq != disabled.Seq {
		t.Fatalf("after denied requests: %+v", got)
	}
	expect(t, "asked again", types(w.usageNotices(u, now.Add(4*time.Minute))))
}

// TestRotationStalledAndUnused: a rotated key still used on the last day
// of its grace is told key.rotation-stalled; a key unused for 90 days is
// told key.unused, and again after a use and another 90 days.
func TestRotationStalledAndUnused(t *testing.T) {
	w := newNoticeWorld(t)
	u := NewUsage()
	w.key(1, nil)
	grace := t0.Add(3 * day)
	w.apply(w.h.add("acme", events.KeyAggregate("bob", keyID(1)), t0, events.KeyRotatedV1{Successor: keyID(2), GraceUntil: grace}))
	w.used(u, 1, 1, "VALID", 1, grace.Add(-2*day))
	expect(t, "two days before the end", types(w.usageNotices(u, grace.Add(-2*day).Add(time.Minute))))
	w.used(u, 2, 1, "VALID", 1, grace.Add(-2*time.Hour))
	expect(t, "used two hours before the end", types(w.usageNotices(u, grace.Add(-time.Hour))), events.NoticeRotationStalled)
	expect(t, "asked again", types(w.usageNotices(u, grace.Add(-30*time.Minute))))

	w2 := newNoticeWorld(t)
	u2 := NewUsage()
	w2.key(5, nil)
	expect(t, "89 days after issue", types(w2.usageNotices(u2, t0.Add(89*day))))
	expect(t, "90 days after issue", types(w2.usageNotices(u2, t0.Add(90*day))), events.NoticeKeyUnused)
	w2.used(u2, 1, 5, "VALID", 1, t0.Add(100*day))
	expect(t, "used again", types(w2.usageNotices(u2, t0.Add(150*day))))
	expect(t, "90 days after that use", types(w2.usageNotices(u2, t0.Add(190*day))), events.NoticeKeyUnused)
}

// TestTenantNoticeSettings: a tenant's own thresholds replace the defaults
// (14 and 2 days here: no 30-day notice), and its own unused period the 90
// days.
func TestTenantNoticeSettings(t *testing.T) {
	w := newNoticeWorld(t)
	w.apply(w.h.add("acme", events.TenantAggregate("acme"), t0, events.TenantNoticesConfiguredV1{ExpiryBefore: []string{"14d", "2d"}, UnusedAfter: "30d"}))
	exp := t0.Add(60 * day)
	w.key(1, &exp)
	expect(t, "30 days before", w.at(exp.Add(-30*day)))
	expect(t, "14 days before", w.at(exp.Add(-14*day)), "key.expiring 14d")
	expect(t, "7 days before", w.at(exp.Add(-7*day)))
	expect(t, "2 days before", w.at(exp.Add(-2*day)), "key.expiring 2d")
	w2 := newNoticeWorld(t)
	w2.apply(w2.h.add("acme", events.TenantAggregate("acme"), t0, events.TenantNoticesConfiguredV1{UnusedAfter: "30d"}))
	w2.key(2, nil)
	expect(t, "30 days unused", types(w2.usageNotices(NewUsage(), t0.Add(30*day))), events.NoticeKeyUnused)
}

// TestAPolicysLifetimeIsWarnedOf: a key without an expiry of its own,
// bounded by its policy's max_ttl, is warned before that bound as before
// an expiry of its own — and again, at the new end, when the policy
// lowers it (the fake clock of the notice world).
func TestAPolicysLifetimeIsWarnedOf(t *testing.T) {
	w := newNoticeWorld(t)
	w.apply(w.h.add("acme", events.PolicyAggregate("short"), t0, events.PolicyCreatedV1{MaxTTL: "60d"}))
	w.apply(w.h.add("acme", events.KeyAggregate("bob", keyID(1)), t0, events.KeyIssuedV1{SecretHash: events.SecretHash{1}, Policies: []string{"short"}}))
	end := t0.Add(60 * day)
	expect(t, "at issue", w.at(t0))
	expect(t, "30 days before the policy's bound", w.at(end.Add(-30*day)), "key.expiring 30d")
	w.apply(w.h.add("acme", events.PolicyAggregate("short"), w.now, events.PolicyUpdatedV1{MaxTTL: "40d"}))
	expect(t, "the bound lowered to 10 days from now", w.at(w.now.Add(time.Minute)), "key.expiring 30d")
	expect(t, "a day before the new bound", w.at(t0.Add(39*day)), "key.expiring 1d")
	expect(t, "at the new bound", w.at(t0.Add(40*day)), "key.expired ")
}
