package projections

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
)

var u0 = time.Date(2026, 12, 7, 11, 59, 40, 0, time.UTC)

func report(node, boot string, window uint64, start time.Time, final bool, counts ...events.UsageCount) *events.UsageReport {
	end := start.Truncate(events.UsageWindow).Add(events.UsageWindow)
	return &events.UsageReport{Node: node, Boot: boot, Window: window, Start: start, End: end, Part: 1, Parts: 1, Every: 10_000, Final: final, Counts: counts}
}

func count(tenant, key, code string, n uint64, at time.Time) events.UsageCount {
	return events.UsageCount{Tenant: tenant, User: "bob", API: "orders", Key: key, Code: code, N: n, Last: at}
}

// TestUsageFoldsWindowsIntoBuckets: windows land in the minute, hour and
// day of their start (a window never straddles a minute); two gateways'
// counts add up; a part folded twice counts once; a tenant sees only its
// own counts.
func TestUsageFoldsWindowsIntoBuckets(t *testing.T) {
	u := NewUsage()
	var seq uint64
	apply := func(r *events.UsageReport) {
		t.Helper()
		seq++
		if err := u.Apply(seq, r.End, r); err != nil {
			t.Fatal(err)
		}
	}
	apply(report("gw-1", "b1", 1, u0, false, count("acme", keyID(1), "VALID", 5, u0)))                                           // 11:59:40–50
	apply(report("gw-1", "b1", 2, u0.Add(10*time.Second), false, count("acme", keyID(1), "VALID", 7, u0)))                       // 11:59:50–12:00:00
	apply(report("gw-1", "b1", 3, u0.Add(20*time.Second), false, count("acme", keyID(1), "EXPIRED", 2, u0.Add(25*time.Second)))) // 12:00:00–10
	apply(report("gw-2", "b2", 1, u0.Add(20*time.Second), false, count("acme", keyID(2), "VALID", 4, u0), count("beta", keyID(9), "VALID", 100, u0)))
	apply(report("gw-2", "b2", 1, u0.Add(20*time.Second), false, count("acme", keyID(2), "VALID", 4, u0))) // the same part again
	q := UsageQuery{Tenant: "acme", GroupBy: "code", Grain: GrainMinute, Since: u0.Add(-time.Hour), Until: u0.Add(time.Hour)}
	ans, err := u.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Total != 18 || len(ans.Series) != 2 || ans.Series[0].Group != "VALID" || ans.Series[0].Total != 16 {
		t.Fatalf("by code: %+v", ans)
	}
	valid := ans.Series[0].Buckets
	if len(valid) != 2 || valid[0].N != 12 || !valid[0].Start.Equal(u0.Truncate(time.Minute)) || valid[1].N != 4 {
		t.Fatalf("VALID by minute: %+v", valid)
	}
	q.Grain = GrainHour
	if ans, _ := u.Query(q); len(ans.Series[0].Buckets) != 2 {
		t.Fatalf("by hour: %+v", ans.Series[0].Buckets)
	}
	q.Grain, q.GroupBy = GrainDay, "key"
	if ans, _ := u.Query(q); ans.Total != 18 || len(ans.Series) != 2 || ans.Series[0].Group != keyID(1) || ans.Series[0].Total != 14 {
		t.Fatalf("by key, by day: %+v", ans)
	}
	q.Key = keyID(9)
	if ans, _ := u.Query(q); ans.Total != 0 {
		t.Fatalf("acme sees beta's key: %+v", ans)
	}
	if _, err := u.Query(UsageQuery{Tenant: "acme", Grain: "week"}); err == nil || !strings.Contains(err.Error(), "bucket") {
		t.Fatalf("a bad bucket: %v", err)
	}
	if _, err := u.Query(UsageQuery{Tenant: "acme", Grain: GrainHour, GroupBy: "color"}); err == nil || !strings.Contains(err.Error(), "group_by") {
		t.Fatalf("a bad group_by: %v", err)
	}
	ku := u.KeyUse("acme", keyID(1), u0.Add(time.Hour))
	if !ku.Used || ku.Last24h != 14 || ku.Last30d != 14 || ku.Node != "gw-1" || ku.Code != "EXPIRED" || !ku.ValidAt.Equal(u0) {
		t.Fatalf("k1's use: %+v", ku)
	}
	if ku := u.KeyUse("acme", keyID(1), u0.Add(48*time.Hour)); ku.Last24h != 0 || ku.Last30d != 14 {
		t.Fatalf("k1's use two days on: %+v", ku)
	}
	if ku := u.KeyUse("acme", "nope", u0); ku.Used {
		t.Fatalf("an unused key: %+v", ku)
	}
}

// TestUsageGapsAreReported: a window missing from a gateway's numbering, a
// window with a part missing, and a gateway that stopped without a final
// window are gaps; one that stopped cleanly is not.
func TestUsageGapsAreReported(t *testing.T) {
	u := NewUsage()
	var seq uint64
	apply := func(r *events.UsageReport) {
		seq++
		if err := u.Apply(seq, r.End, r); err != nil {
			t.Fatal(err)
		}
	}
	w := func(i int) time.Time {
		return u0.Truncate(events.UsageWindow).Add(time.Duration(i) * events.UsageWindow)
	}
	apply(report("gw-1", "b1", 1, w(0), false))
	apply(report("gw-1", "b1", 3, w(2), false)) // window 2 lost
	split := report("gw-1", "b1", 4, w(3), false, count("acme", keyID(1), "VALID", 1, w(3)))
	split.Parts = 2 // part 2 never comes
	apply(split)
	apply(report("gw-2", "clean", 1, w(0), true)) // stopped cleanly
	apply(report("gw-3", "killed", 1, w(0), false))
	for i := 4; i < 10; i++ {
		apply(report("gw-1", "b1", uint64(i+1), w(i), false))
	}
	gaps := u.Gaps()
	var why []string
	for _, g := range gaps {
		why = append(why, g.Node+": "+g.Why)
	}
	got := strings.Join(why, "\n")
	for _, want := range []string{"gw-1: windows 2 to 2 were not reported", "gw-1: a window's parts are missing", "gw-3: the gateway stopped reporting without a final window"} {
		if !strings.Contains(got, want) {
			t.Errorf("gaps lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "gw-2") || len(gaps) != 3 {
		t.Errorf("gaps:\n%s", got)
	}
}

// TestUsageSnapshotRestoresTheFold: a fold written and read back answers
// the same, and folds nothing twice (a report at or before its sequence is
// ignored).
func TestUsageSnapshotRestoresTheFold(t *testing.T) {
	u := NewUsage()
	fold(u, 1, report("gw-1", "b1", 1, u0, false, count("acme", keyID(1), "VALID", 5, u0)))
	fold(u, 2, report("gw-1", "b1", 2, u0.Add(10*time.Second), false, count("acme", keyID(2), "EXPIRED", 3, u0)))
	data, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	back := NewUsage()
	if err := json.Unmarshal(data, back); err != nil {
		t.Fatal(err)
	}
	q := UsageQuery{Tenant: "acme", GroupBy: "key", Grain: GrainMinute, Since: u0.Add(-time.Hour), Until: u0.Add(time.Hour)}
	a, _ := u.Query(q)
	b, _ := back.Query(q)
	if !reflect.DeepEqual(a, b) || back.Seq != 2 || !reflect.DeepEqual(u.Gaps(), back.Gaps()) || back.KeyUse("acme", keyID(1), u0) != u.KeyUse("acme", keyID(1), u0) {
		t.Fatalf("restored:\n%+v\nwant\n%+v", b, a)
	}
	fold(back, 2, report("gw-1", "b1", 2, u0.Add(10*time.Second), false, count("acme", keyID(2), "EXPIRED", 3, u0)))
	fold(back, 3, report("gw-1", "b1", 2, u0.Add(10*time.Second), false, count("acme", keyID(2), "EXPIRED", 3, u0))) // a part folded before
	if b, _ := back.Query(q); b.Total != 8 {
		t.Fatalf("after folding again: %d", b.Total)
	}
	if err := back.Apply(4, u0, &events.UsageReport{Node: "x"}); err == nil || back.Skipped != 1 {
		t.Fatalf("an invalid report: %v, skipped %d", err, back.Skipped)
	}
}

// FuzzUsageReport: whatever a report read from the bus holds, validating
// and folding it never panics.
func FuzzUsageReport(f *testing.F) {
	good, _ := json.Marshal(report("gw-1", "b1", 1, u0, false, count("acme", keyID(1), "VALID", 5, u0)))
	f.Add(good)
	f.Add([]byte(`{"node":"x","boot":"y","window":1,"parts":0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r events.UsageReport
		if json.Unmarshal(data, &r) != nil {
			return
		}
		u := NewUsage()
		u.Apply(1, r.End, &r)
		u.Query(UsageQuery{Tenant: "acme", Grain: GrainHour, Since: u0.Add(-time.Hour), Until: u0.Add(time.Hour)})
		u.Gaps()
	})
}

// fold applies r as stored when its window ended.
func fold(u *Usage, seq uint64, r *events.UsageReport) error { return u.Apply(seq, r.End, r) }

// TestAFarOffClockIsSkippedNotFolded: one report whose window ends weeks
// after the server stored it (a gateway's clock far ahead, or a forgery
// with the gateway identity) wiped the counts and marked every healthy
// gateway silent; it is now skipped and changes nothing. So are counts no
// gateway makes (a code that is not one, a count beyond reason).
func TestAFarOffClockIsSkippedNotFolded(t *testing.T) {
	u := NewUsage()
	w := func(i int) time.Time {
		return u0.Truncate(events.UsageWindow).Add(time.Duration(i) * events.UsageWindow)
	}
	for i := range 6 {
		if err := fold(u, uint64(i+1), report("gw-1", "b1", uint64(i+1), w(i), false, count("acme", keyID(1), "VALID", 2, w(i)))); err != nil {
			t.Fatal(err)
		}
	}
	q := UsageQuery{Tenant: "acme", GroupBy: "code", Grain: GrainMinute, Since: u0.Add(-time.Hour), Until: u0.Add(time.Hour)}
	before, _ := u.Query(q)
	useBefore := u.KeyUse("acme", keyID(1), w(6))
	ahead := w(6).Add(8 * 7 * 24 * time.Hour)
	for i, r := range []*events.UsageReport{
		report("skewed", "b2", 1, ahead, true, count("acme", keyID(1), "VALID", 1, ahead)),
		report("gw-1", "b1", 7, w(6), false, count("acme", keyID(1), "WHATEVER", 1, w(6))),
		report("gw-1", "b1", 8, w(7), false, count("acme", keyID(1), "VALID", 1<<63, w(7))),
	} {
		if err := u.Apply(uint64(10+i), w(6), r); err == nil {
			t.Fatalf("report %d folded", i)
		}
	}
	after, _ := u.Query(q)
	if fmt.Sprint(after) != fmt.Sprint(before) || u.Skipped != 3 || len(u.Gaps()) != 0 || u.KeyUse("acme", keyID(1), w(6)) != useBefore {
		t.Fatalf("a skipped report changed the fold: %+v, skipped %d, gaps %+v", after, u.Skipped, u.Gaps())
	}
	if err := u.Apply(20, w(6).Add(time.Hour), report("late", "b3", 1, w(0), true)); err != nil {
		t.Fatalf("a backlog an hour late: %v", err)
	}
}
