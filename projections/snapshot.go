package projections

import (
	"bytes"
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
const snapshotFormat = 4

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
	Users  []entrySnapshot[User]
	Keys   []entrySnapshot[Key]
	APIs   []entrySnapshot[API]
}

// entrySnapshot keeps a state with the id it is filed under: a state that
// holds only a chain head (its aggregate's first event did not apply) or a
// user a key points at before the user exists has no id of its own.
type entrySnapshot[T any] struct {
	ID    string
	State T
}

func sortedEntries[V any](m map[string]*V) []entrySnapshot[V] {
	out := make([]entrySnapshot[V], 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, entrySnapshot[V]{ID: k, State: *m[k]})
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
			Users: sortedEntries(t.users), Keys: sortedEntries(t.keys), APIs: sortedEntries(t.apis)})
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
		for _, e := range ts.Users {
			u := e.State
			t.users[e.ID] = &u
		}
		for _, e := range ts.APIs {
			a := e.State
			t.apis[e.ID] = &a
			if !a.Exists() {
				continue
			}
			if _, taken := c.prefix[a.PathPrefix]; taken {
				return nil, fmt.Errorf("projections: snapshot: two APIs hold %s", a.PathPrefix)
			}
			c.prefix[a.PathPrefix] = &a
		}
		for _, e := range ts.Keys {
			k := e.State
			t.keys[e.ID] = &k
			if !k.Exists() {
				continue
			}
			c.share(t, &k)
			if _, dup := c.byHash[k.SecretHash]; dup {
				return nil, errors.New("projections: snapshot: two keys share a secret hash")
			}
			c.byHash[k.SecretHash] = keyRef{key: &k, tenant: t, user: entry(t.users, k.User)}
		}
	}
	return c, nil
}
