package readmodel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/projections"
)

// Buckets of the snapshots: the object store holding them and the key-value
// bucket whose lease makes one node at a time the writer.
const (
	SnapshotBucket = "KEYTRAIL_SNAPSHOTS"
	LeaseBucket    = "KEYTRAIL_SNAPSHOT_LEASES"
	leaseTTL       = 2 * time.Minute
)

// ErrNotWriter: another node holds the lease; this one does not write.
var ErrNotWriter = errors.New("readmodel: another node writes the snapshots")

// Snapshots stores read-model snapshots in the JetStream object store, one
// object per set of filters, with the sequence it covers in its metadata.
type Snapshots struct {
	obj   jetstream.ObjectStore
	lease jetstream.KeyValue
	node  string
	name  string
	// verifyOnly: the kind of catalog the snapshots hold (the model's).
	verifyOnly bool
}

// OpenSnapshots opens (creating if need be) the snapshot buckets for the
// snapshots of m's kind of catalog (full or verification-only) under
// filters. node names this process for the writer lease.
func OpenSnapshots(ctx context.Context, js jetstream.JetStream, replicas int, node string, m *Model, filters []string) (*Snapshots, error) {
	if replicas < 1 {
		replicas = 1
	}
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: SnapshotBucket,
		Description: "Keytrail read-model snapshots", Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("readmodel: snapshot bucket: %w", err)
	}
	lease, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: LeaseBucket,
		Description: "Keytrail snapshot writer leases", TTL: leaseTTL, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("readmodel: lease bucket: %w", err)
	}
	verifyOnly := m.VerifyOnly()
	return &Snapshots{obj: obj, lease: lease, node: node, name: snapshotName(verifyOnly, filters), verifyOnly: verifyOnly}, nil
}

// snapshotName names the object of a kind of catalog and a set of filters:
// a gateway serving some tenants has a model of its own.
func snapshotName(verifyOnly bool, filters []string) string {
	kind := "catalog-"
	if verifyOnly {
		kind = "verification-"
	}
	if len(filters) == 0 {
		return kind + "all"
	}
	sum := sha256.Sum256([]byte(strings.Join(filters, "\x00")))
	return kind + hex.EncodeToString(sum[:8])
}

// Load returns the latest snapshot, or nil when there is none.
func (s *Snapshots) Load(ctx context.Context) (*projections.Catalog, error) {
	b, err := s.obj.GetBytes(ctx, s.name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("readmodel: load snapshot: %w", err)
	}
	c, err := projections.ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if c.VerifyOnly() != s.verifyOnly {
		return nil, fmt.Errorf("readmodel: snapshot %s holds another kind of catalog", s.name)
	}
	return c, nil
}

// Save writes the model's catalog, if this node holds (or can take) the
// writer lease. It returns the sequence the snapshot covers.
func (s *Snapshots) Save(ctx context.Context, m *Model) (uint64, error) {
	if err := s.acquire(ctx); err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	var seq uint64
	var err error
	m.Read(func(c *projections.Catalog) {
		seq = c.Seq
		err = c.WriteSnapshot(&buf)
	})
	if err != nil {
		return 0, err
	}
	_, err = s.obj.Put(ctx, jetstream.ObjectMeta{Name: s.name, Description: "catalog as of seq " + strconv.FormatUint(seq, 10),
		Metadata: map[string]string{"seq": strconv.FormatUint(seq, 10), "node": s.node}}, &buf)
	if err != nil {
		return 0, fmt.Errorf("readmodel: save snapshot: %w", err)
	}
	return seq, nil
}

// acquire takes the writer lease for this snapshot, or renews it; the key
// expires with the bucket's TTL when its holder stops renewing.
func (s *Snapshots) acquire(ctx context.Context) error {
	key := "writer-" + s.name
	e, err := s.lease.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if _, err := s.lease.Create(ctx, key, []byte(s.node)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return ErrNotWriter
			}
			return fmt.Errorf("readmodel: lease: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("readmodel: lease: %w", err)
	case string(e.Value()) != s.node:
		return ErrNotWriter
	}
	if _, err := s.lease.Update(ctx, key, []byte(s.node), e.Revision()); err != nil {
		return ErrNotWriter // someone else renewed or took it in between
	}
	return nil
}

// Restore makes the model start from c (a snapshot) instead of an empty
// catalog: Run then tails the log from c.Seq+1. Call it before Run.
func (m *Model) Restore(c *projections.Catalog) {
	m.mu.Lock()
	m.cat = c
	m.mu.Unlock()
	m.applied.Store(c.Seq)
}
