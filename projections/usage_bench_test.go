package projections

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
)

// usageBenchKeys is how many keys the measured tenant has; usageBenchNoise
// how many a second tenant, reported in the same windows, has.
const (
	usageBenchKeys  = 10_000
	usageBenchNoise = 2_000
	usageBenchHours = 30 * 24
)

func usageBenchKey(i int) string { return fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5C%07d", i) }

// usageBenchCode is what key i was answered in hour h: mostly VALID, a
// denial for one key in ten (which one turns with the hour).
func usageBenchCode(i, h int) string {
	switch (i + h) % 20 {
	case 3:
		return string(CodeRateLimited)
	case 11:
		return string(CodeInsufficientScope)
	case 17:
		return string(CodeExpired)
	}
	return string(CodeValid)
}

// usageFold30d folds 30 days of one gateway's reports: one 10 s window in
// every hour (inside the hour, so the window lands in that hour's bucket),
// each with a count for every one of the tenant's keys and the noise
// tenant's, in parts of at most events.MaxUsageEntries counts. It returns
// the fold, its first hour, the reports' count and the heap the fold holds.
func usageFold30d(tb testing.TB) (*Usage, time.Time, int, uint64) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	u := NewUsage()
	first := time.Date(2026, 11, 7, 0, 0, 0, 0, time.UTC)
	var seq uint64
	counts := make([]events.UsageCount, 0, usageBenchKeys+usageBenchNoise)
	for h := range usageBenchHours {
		start := first.Add(time.Duration(h)*time.Hour + 30*time.Minute)
		end := start.Add(events.UsageWindow)
		counts = counts[:0]
		for i := range usageBenchKeys {
			counts = append(counts, events.UsageCount{Tenant: "acme", User: fmt.Sprintf("u%d", i%100),
				API: [...]string{"orders", "billing"}[i%2], Key: usageBenchKey(i), Code: usageBenchCode(i, h),
				N: uint64(1 + (i+h)%50), Last: end.Add(-time.Second)})
		}
		for i := range usageBenchNoise {
			counts = append(counts, events.UsageCount{Tenant: "noise", User: "bob", API: "search",
				Key: fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5D%07d", i), Code: usageBenchCode(i, h), N: 3, Last: end.Add(-time.Second)})
		}
		parts := (len(counts) + events.MaxUsageEntries - 1) / events.MaxUsageEntries
		for p := range parts {
			r := &events.UsageReport{Node: "gw-1", Boot: "b00", Window: uint64(h + 1), Start: start, End: end,
				Part: p + 1, Parts: parts, Every: 10_000, Final: h == usageBenchHours-1,
				Counts: counts[p*events.MaxUsageEntries : min((p+1)*events.MaxUsageEntries, len(counts))]}
			seq++
			if err := u.Apply(seq, r.End, r); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if u.Skipped != 0 {
		tb.Fatalf("%d reports skipped", u.Skipped)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(u)
	return u, first, int(seq), after.HeapAlloc - before.HeapAlloc
}

// BenchmarkUsageQuery: a tenant's usage over 30 days in hour buckets, from
// a fold holding 30 days of hourly counts for its 10 000 keys (and another
// tenant's): grouped by code (the dashboard's default; target ≤ 50 ms),
// grouped by key, and one key's. The fold's heap is reported as
// fold-MB on each.
func BenchmarkUsageQuery(b *testing.B) {
	t0 := time.Now()
	u, first, reports, heap := usageFold30d(b)
	built := time.Since(t0)
	b.Logf("fold of %d hours × %d+%d keys: %d report parts, built in %s, heap %.0f MB",
		usageBenchHours, usageBenchKeys, usageBenchNoise, reports, built.Round(time.Millisecond), float64(heap)/(1<<20))
	last := first.Add(usageBenchHours * time.Hour)
	for _, c := range []struct {
		name   string
		q      UsageQuery
		series int
	}{
		{"by-code", UsageQuery{GroupBy: "code"}, 4},
		{"by-key", UsageQuery{GroupBy: "key"}, usageBenchKeys},
		{"one-key", UsageQuery{Key: usageBenchKey(4242)}, 1},
	} {
		q := c.q
		q.Tenant, q.Grain, q.Since, q.Until = "acme", GrainHour, first, last
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var ans UsageAnswer
			for b.Loop() {
				var err error
				if ans, err = u.Query(q); err != nil {
					b.Fatal(err)
				}
			}
			if len(ans.Series) != c.series {
				b.Fatalf("%d series, want %d", len(ans.Series), c.series)
			}
			if n := len(ans.Series[0].Buckets); n != usageBenchHours {
				b.Fatalf("%d hour buckets in the first series, want %d", n, usageBenchHours)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/op")
			b.ReportMetric(float64(heap)/(1<<20), "fold-MB")
		})
	}
	runtime.KeepAlive(u)
}
