package projections

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
)

// snapshotFormat is the version of the snapshot encoding; a reader refuses
// another (and the node folds the log from the start instead).
const snapshotFormat = 3

// catalogSnapshot is a Catalog in a deterministic shape: everything sorted,
// so that equal catalogs encode to equal bytes (Digest).
type catalogSnapshot struct {
	Format   int
	Seq      uint64
	Skipped  uint64
	Problems []problemSnapshot
	Tenants  []tenantSnapshot
}

type problemSnapshot struct {
	Seq uint64
	Err string
}

type tenantSnapshot struct {
	ID     string
	Tenant Tenant
	Users  []User
	Keys   []Key
	APIs   []API
}

func sortedValues[K cmp.Ordered, V any](m map[K]*V) []V {
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, *m[k])
	}
	return out
}

func (c *Catalog) snapshot() catalogSnapshot {
	s := catalogSnapshot{Format: snapshotFormat, Seq: c.Seq, Skipped: c.Skipped}
	for _, p := range c.Problems {
		s.Problems = append(s.Problems, problemSnapshot{Seq: p.Seq, Err: p.Err.Error()})
	}
	for _, id := range slices.Sorted(maps.Keys(c.tenants)) {
		t := c.tenants[id]
		s.Tenants = append(s.Tenants, tenantSnapshot{ID: id, Tenant: t.Tenant,
			Users: sortedValues(t.users), Keys: sortedValues(t.keys), APIs: sortedValues(t.apis)})
	}
	return s
}

// WriteSnapshot encodes the catalog: everything a node needs to resume from
// Seq+1 without folding the log from the start.
func (c *Catalog) WriteSnapshot(w io.Writer) error {
	if err := gob.NewEncoder(w).Encode(c.snapshot()); err != nil {
		return fmt.Errorf("projections: snapshot: %w", err)
	}
	return nil
}

// Digest is the SHA-256 of the catalog's snapshot: equal catalogs, however
// they were built (incrementally, by a full replay, from a snapshot and a
// tail), have equal digests.
func (c *Catalog) Digest() [32]byte {
	var b bytes.Buffer
	if err := c.WriteSnapshot(&b); err != nil {
		panic(err) // only types of this package, which always encode
	}
	return sha256.Sum256(b.Bytes())
}

// ErrSnapshotFormat: a snapshot of another format.
var ErrSnapshotFormat = errors.New("projections: unknown snapshot format")

// ReadSnapshot restores a catalog written by WriteSnapshot, rebuilding its
// indexes. The snapshot comes from the node's own object store, but it is
// still checked rather than trusted: a bad one is an error, never a panic.
func ReadSnapshot(r io.Reader) (*Catalog, error) {
	var s catalogSnapshot
	if err := gob.NewDecoder(r).Decode(&s); err != nil {
		return nil, fmt.Errorf("projections: read snapshot: %w", err)
	}
	if s.Format != snapshotFormat {
		return nil, fmt.Errorf("%w %d", ErrSnapshotFormat, s.Format)
	}
	c := NewCatalog()
	c.Seq, c.Skipped = s.Seq, s.Skipped
	for _, p := range s.Problems {
		c.Problems = append(c.Problems, Problem{Seq: p.Seq, Err: errors.New(p.Err)})
	}
	for _, ts := range s.Tenants {
		t := c.tenant(ts.ID)
		t.Tenant = ts.Tenant
		for i := range ts.Users {
			u := ts.Users[i]
			t.users[u.ID] = &u
		}
		for i := range ts.APIs {
			a := ts.APIs[i]
			t.apis[a.ID] = &a
			if !a.Exists() {
				continue
			}
			if _, taken := c.prefix[a.PathPrefix]; taken {
				return nil, fmt.Errorf("projections: snapshot: two APIs hold %s", a.PathPrefix)
			}
			c.prefix[a.PathPrefix] = &a
		}
		for i := range ts.Keys {
			k := ts.Keys[i]
			t.keys[k.ID] = &k
			if !k.Exists() {
				continue
			}
			c.share(t, &k)
			if _, dup := c.byHash[k.SecretHash]; dup {
				return nil, errors.New("projections: snapshot: two keys share a secret hash")
			}
			c.byHash[k.SecretHash] = keyRef{key: &k, tenant: t, user: c.userRef(t, k.User)}
		}
	}
	return c, nil
}
