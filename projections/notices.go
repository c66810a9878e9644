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
// sent late. thresholds nil: DefaultExpiryThresholds.
func DueNotices(c *Catalog, sent NoticesSent, now time.Time, thresholds []time.Duration) []events.Notice {
	if thresholds == nil {
		thresholds = DefaultExpiryThresholds
	}
	ths := slices.Clone(thresholds)
	slices.Sort(ths) // nearest first
	var out []events.Notice
	at := instantOf(now)
	for tid, t := range c.tenants {
		for _, k := range t.keys {
			if !k.exists() || k.status == keyRevoked {
				continue
			}
			end := min(k.expiresAt, k.graceUntil)
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
