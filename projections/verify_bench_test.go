package projections

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
)

// catalogWith returns a catalog of n keys of one user and the secret of one.
func catalogWith(tb testing.TB, n int) (*Catalog, string) {
	var h chain
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
	h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{})
	var probe secret.Secret
	for i := range n {
		sec := mustSecret(tb)
		if i == n/2 {
			probe = sec
		}
		h.add("acme", events.KeyAggregate("bob", fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5%08d", i)), t0,
			events.KeyIssuedV1{SecretHash: sec.Hash(), Hint: "h", Scopes: []string{"orders:read"}})
	}
	c := NewCatalog()
	for _, r := range h.out {
		if err := c.Apply(r); err != nil {
			tb.Fatal(err)
		}
	}
	return c, probe.Reveal()
}

func TestVerifyValidAllocatesNothing(t *testing.T) {
	c, sec := catalogWith(t, 10)
	q := Request{Secret: sec, Prefix: secret.DefaultPrefix, Scopes: []string{"orders:read"}}
	now := t0.Add(time.Minute)
	if d := c.Verify(q, now); d.Code != CodeValid {
		t.Fatal(d.Code)
	}
	if n := testing.AllocsPerRun(200, func() { c.Verify(q, now) }); n != 0 {
		t.Fatalf("VALID allocates %v times", n)
	}
}

// BenchmarkVerify: one verification of a VALID key against one SHA-256 of
// the same secret, measured in the same run (ratio = verify / sha256; the
// goal is at most 2).
func BenchmarkVerify(b *testing.B) {
	c, sec := catalogWith(b, 1000)
	q := Request{Secret: sec, Prefix: secret.DefaultPrefix, Scopes: []string{"orders:read"}}
	now := t0.Add(time.Minute)
	raw := []byte(sec)
	const n = 200_000
	start := time.Now()
	for range n {
		sha256.Sum256(raw)
	}
	shaNs := float64(time.Since(start).Nanoseconds()) / n
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if d := c.Verify(q, now); d.Code != CodeValid {
			b.Fatal(d.Code)
		}
	}
	b.StopTimer()
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(shaNs, "sha256-ns")
	b.ReportMetric(perOp/shaNs, "ratio")
}

// catalogOfSize builds n keys quickly: secrets are not needed for all of
// them, only hashes; the probe key has a real secret.
func catalogOfSize(tb testing.TB, c *Catalog, n int) (*Catalog, string) {
	tb.Helper()
	var h chain
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
	for u := range 100 {
		h.add("acme", events.UserAggregate(fmt.Sprintf("user%d", u)), t0, events.UserCreatedV1{})
	}
	for _, r := range h.out {
		c.Apply(r)
	}
	probe := mustSecret(tb)
	for i := range n {
		hash := sha256.Sum256([]byte(fmt.Sprint(i)))
		if i == n/2 {
			hash = probe.Hash()
		}
		r := h.add("acme", events.KeyAggregate(fmt.Sprintf("user%d", i%100), fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5%08d", i)), t0,
			events.KeyIssuedV1{SecretHash: hash, Hint: "kt_…abcd", Scopes: []string{"orders:read"}})
		if err := c.Apply(r); err != nil {
			tb.Fatal(err)
		}
		h.out = h.out[:0]
	}
	return c, probe.Reveal()
}

// kinds are the two kinds of catalog: the gateway's and the admin side's.
var kinds = []struct {
	name string
	new  func() *Catalog
}{{"verification", NewVerificationCatalog}, {"full", NewCatalog}}

// BenchmarkVerifyKeys: verify at 1K and 1M keys (goal: at most 0.3 µs
// apart), and the catalog's heap bytes per key at each size (goal: at most
// 300 at 1M, for the verification catalog a gateway holds).
func BenchmarkVerifyKeys(b *testing.B) {
	for _, kind := range kinds {
		for _, n := range []int{1_000, 1_000_000} {
			b.Run(fmt.Sprintf("%s/%d", kind.name, n), func(b *testing.B) {
				benchVerifyKeys(b, kind.new(), n)
			})
		}
	}
}

func benchVerifyKeys(b *testing.B, c *Catalog, n int) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c, sec := catalogOfSize(b, c, n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	q := Request{Secret: sec, Prefix: secret.DefaultPrefix, Scopes: []string{"orders:read"}}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if d := c.Verify(q, now); d.Code != CodeValid {
			b.Fatal(d.Code)
		}
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/key")
	runtime.KeepAlive(c)
}

// BenchmarkVerifyParallel: verify on every core at once.
func BenchmarkVerifyParallel(b *testing.B) {
	c, sec := catalogWith(b, 1000)
	q := Request{Secret: sec, Prefix: secret.DefaultPrefix, Scopes: []string{"orders:read"}}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d := c.Verify(q, now); d.Code != CodeValid {
				b.Error(d.Code)
				return
			}
		}
	})
}

// BenchmarkSnapshotRestore: write a snapshot of a catalog of 1M keys and
// restore it (the restore bounds a node's ready time from a snapshot; goal
// 2 s at 1M keys), for both kinds of catalog.
func BenchmarkSnapshotRestore(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind.name, func(b *testing.B) { benchSnapshotRestore(b, kind.new()) })
	}
}

func benchSnapshotRestore(b *testing.B, c *Catalog) {
	c, _ = catalogOfSize(b, c, 1_000_000)
	var buf bytes.Buffer
	start := time.Now()
	if err := c.WriteSnapshot(&buf); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(start).Seconds(), "write-s")
	b.ReportMetric(float64(buf.Len())/1e6, "MB")
	data := buf.Bytes()
	b.ResetTimer()
	for b.Loop() {
		if _, err := ReadSnapshot(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "restore-s")
}

// BenchmarkApply: fold key.issued and key.updated events into each kind of
// catalog (the fold without the log: what BenchmarkFold in integration adds
// to decoding).
func BenchmarkApply(b *testing.B) {
	var h chain
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
	for u := range 100 {
		h.add("acme", events.UserAggregate(fmt.Sprintf("user%d", u)), t0, events.UserCreatedV1{})
	}
	const keys = 100_000
	for i := range keys {
		agg := events.KeyAggregate(fmt.Sprintf("user%d", i%100), fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5%08d", i))
		h.add("acme", agg, t0, events.KeyIssuedV1{SecretHash: sha256.Sum256([]byte(fmt.Sprint(i))), Hint: "kt_…abcd", Scopes: []string{"orders:read"}})
		h.add("acme", agg, t0, events.KeyUpdatedV1{Name: "renamed", Scopes: []string{"orders:read"}})
	}
	for _, kind := range kinds {
		b.Run(kind.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := kind.new()
				for _, r := range h.out {
					if err := c.Apply(r); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(h.out)), "ns/event")
		})
	}
}
