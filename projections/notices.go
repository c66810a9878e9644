package projections

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
)

// DefaultExpiryThresholds are how long before a key stops working its
// tenant is told: 30, 7 and 1 day.
var DefaultExpiryThresholds = []time.Duration{30 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour}

// NoticesSent is what the notice stream holds: the ids of the notices
// already sent. A pure set; control nodes fold the stream into it.
type NoticesSent map[string]bool

// DueNotices are the notices due at now that have not been sent: for
// each key that is not revoked, key.expiring at the thresholds before it
// stops working (its expiry, or the end of its rotation's grace) and
// key.expired once it has. A notice's id names the key and the expiry it
// is about, so a changed expiry re-arms the thresholds, and a revoked key
// is told nothing more. After downtime only the nearest threshold passed
// is told (or key.expired, once expired): the rest are superseded, never
// sent late. The thresholds are the tenant's own when it set them, else
// thresholds (nil: DefaultExpiryThresholds).
func DueNotices(c *Catalog, sent NoticesSent, now time.Time, thresholds []time.Duration) []events.Notice {
	if thresholds == nil {
		thresholds = DefaultExpiryThresholds
	}
	var out []events.Notice
	at := instantOf(now)
	for tid, t := range c.tenants {
		ths := thresholds
		if own, _ := t.Notices.Durations(); len(own) > 0 {
			ths = own // the tenant's own settings
		}
		ths = slices.Clone(ths)
		slices.Sort(ths) // nearest first
		for _, k := range t.keys {
			if !k.exists() || k.status == keyRevoked {
				continue
			}
			end := k.end() // a policy's lifetime bound included
			if end == never {
				continue
			}
			expires := time.Unix(0, int64(end)).UTC()
			n := events.Notice{Tenant: tid, User: k.user.ID, KeyID: k.id, At: now.UTC(), Seq: c.Seq, ExpiresAt: &expires}
			if at >= end {
				n.Type, n.ID = events.NoticeKeyExpired, noticeID(events.NoticeKeyExpired, k.id, expires, "")
				n.Text = fmt.Sprintf("key %s of %s/%s stopped working at %s", k.id, tid, k.user.ID, expires.Format(time.RFC3339))
				if !sent[n.ID] {
					out = append(out, n)
				}
				continue
			}
			for _, th := range ths {
				if at < end-instant(th) {
					continue // not yet
				}
				before := days(th)
				n.Type, n.Before, n.ID = events.NoticeKeyExpiring, before, noticeID(events.NoticeKeyExpiring, k.id, expires, before)
				n.Text = fmt.Sprintf("key %s of %s/%s stops working in less than %s, at %s", k.id, tid, k.user.ID, before, expires.Format(time.RFC3339))
				if !sent[n.ID] && !sentNearer(sent, k.id, expires, ths, th) {
					out = append(out, n)
				}
				break // the nearest threshold passed: the others are superseded
			}
		}
	}
	slices.SortFunc(out, func(a, b events.Notice) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// sentNearer reports whether a notice of a threshold nearer than th was
// sent for this expiry (then th, passed earlier, is superseded).
func sentNearer(sent NoticesSent, keyID string, expires time.Time, ths []time.Duration, th time.Duration) bool {
	for _, x := range ths {
		if x < th && sent[noticeID(events.NoticeKeyExpiring, keyID, expires, days(x))] {
			return true
		}
	}
	return false
}

func noticeID(typ, keyID string, expires time.Time, before string) string {
	id := fmt.Sprintf("%s:%s:%d", typ, keyID, expires.Unix())
	if before != "" {
		id += ":" + before
	}
	return id
}

// days writes a threshold as people say it: "7d", or "36h" when it is not
// whole days.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// UsageNoticeConfig tunes the notices that rest on usage counts.
type UsageNoticeConfig struct {
	// UnusedFor: a key no request presented for this long (default 90
	// days) is told key.unused.
	UnusedFor time.Duration
	// Recent: "used" means used this recently (default 24 hours).
	Recent time.Duration
}

func (c *UsageNoticeConfig) defaults() {
	if c.UnusedFor <= 0 {
		c.UnusedFor = 90 * 24 * time.Hour
	}
	if c.Recent <= 0 {
		c.Recent = 24 * time.Hour
	}
}

// DueUsageNotices are the notices due at now that rest on usage counts as
// well as on the log:
//   - keys.blocked: a user disabled or deleted, or a tenant suspended,
//     while keys of it were used in the Recent window — one notice per
//     causing event, counting those keys;
//   - key.denials-started: a key whose requests were VALID in the Recent
//     window and are now denied (its last request was) — the code, and
//     the event that causes it;
//   - key.rotation-stalled: a rotated key still used in the last day of
//     its grace;
//   - key.unused: a key issued UnusedFor ago (the tenant's own setting
//     when it set one) that no request presented for that long (again after
//     each use).
//
// Ids name what the notice is about and the event or time it rests on, so
// each is told once, and again only when that changes.
func DueUsageNotices(c *Catalog, u *Usage, sent NoticesSent, now time.Time, cfg UsageNoticeConfig) []events.Notice {
	cfg.defaults()
	var out []events.Notice
	add := func(n events.Notice) {
		if !sent[n.ID] {
			n.At, n.Seq = now.UTC(), c.Seq
			out = append(out, n)
		}
	}
	recent := now.Add(-cfg.Recent)
	type blocked struct {
		n    events.Notice
		last time.Time
	}
	blocks := map[string]*blocked{}
	// consider judges one key of tenant t, given its use.
	consider := func(tid string, t *tenantEntry, k *keyState, use KeyUse, unusedFor time.Duration) {
		// Whose state blocks the key: the tenant's, else the user's.
		var cause Evidence
		var code Code
		switch {
		case !t.Exists() || t.Status != TenantActive:
			cause, code = t.StatusBy, CodeTenantSuspended
		case k.user.Exists() && k.user.Status == UserDisabled:
			cause, code = k.user.StatusBy, CodeUserDisabled
		case k.user.Exists() && k.user.Status == UserDeleted:
			cause, code = k.user.StatusBy, CodeUserDeleted
		}
		if cause != 0 && use.Used && use.At.After(recent) {
			about := k.user.ID
			if code == CodeTenantSuspended {
				about = ""
			}
			id := fmt.Sprintf("%s:%s:%s:%d", events.NoticeKeysBlocked, tid, about, cause.Seq())
			b := blocks[id]
			if b == nil {
				b = &blocked{n: events.Notice{ID: id, Type: events.NoticeKeysBlocked, Tenant: tid, User: about, Code: string(code),
					CauseSeq: cause.Seq(), CauseType: string(cause.Type())}}
				blocks[id] = b
			}
			b.n.Keys++
			if use.At.After(b.last) {
				b.last = use.At
			}
		}
		// A key whose requests turned from VALID to denied.
		if use.Used && use.Code != string(CodeValid) && use.ValidAt.After(recent) && use.At.After(use.ValidAt) {
			d := c.VerifyHash(k.hash, Request{}, now)
			if d.Code != CodeValid && d.Code != CodeNotFound {
				var ev Evidence
				if e := d.Evidence(); len(e) > 0 {
					ev = e[0]
				}
				last := use.At
				add(events.Notice{ID: fmt.Sprintf("%s:%s:%d", events.NoticeDenialsStarted, k.id, ev.Seq()), Type: events.NoticeDenialsStarted,
					Tenant: tid, User: k.user.ID, KeyID: k.id, Code: string(d.Code), CauseSeq: ev.Seq(), CauseType: string(ev.Type()), LastUsedAt: &last,
					Text: fmt.Sprintf("key %s of %s/%s: requests are denied %s since %s at seq %d; its last VALID request was at %s",
						k.id, tid, k.user.ID, d.Code, ev.Type(), ev.Seq(), use.ValidAt.UTC().Format(time.RFC3339))})
			}
		}
		// A rotated key still used near the end of its grace.
		if k.graceUntil != never && use.Used {
			end := time.Unix(0, int64(k.graceUntil)).UTC()
			const window = 24 * time.Hour
			if !now.Before(end.Add(-window)) && now.Before(end) && use.At.After(end.Add(-window)) {
				last := use.At
				add(events.Notice{ID: fmt.Sprintf("%s:%s:%d", events.NoticeRotationStalled, k.id, end.Unix()), Type: events.NoticeRotationStalled,
					Tenant: tid, User: k.user.ID, KeyID: k.id, ExpiresAt: &end, LastUsedAt: &last,
					Text: fmt.Sprintf("key %s of %s/%s was rotated and is still used; it stops working at %s", k.id, tid, k.user.ID, end.Format(time.RFC3339))})
			}
		}
		// A key nobody uses.
		since := time.Time{}
		if k.created != always && k.created != never {
			since = time.Unix(0, int64(k.created)).UTC()
		}
		if use.Used {
			since = use.At
		}
		if !since.IsZero() && now.Sub(since) >= unusedFor {
			n := events.Notice{ID: fmt.Sprintf("%s:%s:%d", events.NoticeKeyUnused, k.id, since.Unix()), Type: events.NoticeKeyUnused,
				Tenant: tid, User: k.user.ID, KeyID: k.id,
				Text: fmt.Sprintf("key %s of %s/%s has not been used for %s", k.id, tid, k.user.ID, days(unusedFor))}
			if use.Used {
				last := use.At
				n.LastUsedAt = &last
			}
			add(n)
		}
	}
	for tid, t := range c.tenants {
		unusedFor := cfg.UnusedFor
		if _, own := t.Notices.Durations(); own > 0 {
			unusedFor = own // the tenant's own setting
		}
		// The keys requests presented (the usage fold's, far fewer than a
		// tenant's keys): every notice that rests on use…
		used := u.last[tid]
		seen := make(map[*keyState]bool, len(used))
		for kid, l := range used {
			if k := t.keys[kid]; k != nil {
				seen[k] = true
				if k.exists() && k.status != keyRevoked {
					consider(tid, t, k, KeyUse{LastUse: l.LastUse, Used: true}, unusedFor)
				}
			}
		}
		// …and the keys no request presented, which can only be unused:
		// one pass over the tenant's keys, by pointer (reading no key id).
		for _, k := range t.keys {
			if !k.exists() || k.status == keyRevoked || seen[k] {
				continue
			}
			consider(tid, t, k, KeyUse{}, unusedFor)
		}
	}
	for _, b := range blocks {
		last := b.last
		b.n.LastUsedAt = &last
		who := "tenant " + b.n.Tenant
		if b.n.User != "" {
			who = b.n.Tenant + "/" + b.n.User
		}
		b.n.Text = fmt.Sprintf("%d keys of %s used in the last %s now deny %s since %s at seq %d", b.n.Keys, who, days(cfg.Recent),
			b.n.Code, b.n.CauseType, b.n.CauseSeq)
		add(b.n)
	}
	slices.SortFunc(out, func(a, b events.Notice) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
