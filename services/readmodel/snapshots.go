package readmodel

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/trust"
)

// leaseTTL is how long a snapshot writer's lease lasts unrenewed.
const leaseTTL = 2 * time.Minute

// The snapshot objects: the full catalog (control nodes) and the
// verification-only one (gateways), both of the whole log. A gateway that
// serves some tenants folds them from the log instead.
const (
	FullSnapshot         = "catalog-all"
	VerificationSnapshot = "verification-all"
)

// snapshotSample is how many aggregates a node checks against the log
// before it trusts a snapshot (all of them when there are fewer).
const snapshotSample = 2048

// Errors of snapshots.
var (
	// ErrNotWriter: another node holds the lease; this one does not write.
	ErrNotWriter = errors.New("readmodel: another node writes the snapshots")
	// ErrSnapshotInconsistent: a snapshot that does not agree with the log
	// (it covers sequences the stream does not have, or its chain heads are
	// not the stream's messages): the node folds the log instead.
	ErrSnapshotInconsistent = errors.New("readmodel: snapshot is not consistent with the event stream")
	// ErrSnapshotUnsigned: with a root pinned, a snapshot without a
	// manifest signed by a signer the log trusted as of its sequence, or
	// whose manifest is not of it.
	ErrSnapshotUnsigned = errors.New("readmodel: snapshot is not signed by a trusted signer")
)

// openManifest verifies a snapshot's manifest (the base64 of a signed
// note) against the signers of events the log trusted as of the sequence
// it names — the signer set folded from the log, its events judged by the
// root key — and returns its text.
func openManifest(ctx context.Context, log SnapshotLog, root ed25519.PublicKey, b64 string) (string, error) {
	note, err := base64.StdEncoding.DecodeString(b64)
	if b64 == "" || err != nil {
		return "", fmt.Errorf("%w: it has no manifest", ErrSnapshotUnsigned)
	}
	lines := strings.Split(events.NoteText(note), "\n")
	if len(lines) != 7 {
		return "", fmt.Errorf("%w: its manifest is not one", ErrSnapshotUnsigned)
	}
	seq, err := strconv.ParseUint(lines[3], 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: its manifest names no sequence", ErrSnapshotUnsigned)
	}
	set, _, err := trust.SignerSet(ctx, log, root)
	if err != nil {
		return "", err
	}
	text, err := events.OpenNote(note, set.SignersAfter(seq, events.SignerRoleEvents))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSnapshotUnsigned, err)
	}
	return text, nil
}

// Snapshots is the writer of read-model snapshots, in the JetStream object
// store, with the sequence each covers in its metadata. Only control nodes
// write them (and hold the lease that makes one of them the writer); every
// role that may read the snapshot bucket loads them with LoadSnapshot.
type Snapshots struct {
	obj   jetstream.ObjectStore
	lease jetstream.KeyValue
	node  string
	// key signs each snapshot's manifest for the log origin (SignWith).
	key    ed25519.PrivateKey
	origin string
}

// SignWith makes Save sign a manifest of each snapshot with key (a control
// node's signing key) naming the log's origin (trust.Origin): readers with a
// root pinned load only a snapshot whose manifest a signer of the log
// signed, for this log.
func (s *Snapshots) SignWith(key ed25519.PrivateKey, origin string) *Snapshots {
	s.key, s.origin = key, origin
	return s
}

// manifestKey is the object metadata member holding a snapshot's signed
// manifest (base64 of the note).
const manifestKey = "manifest"

// manifestText is what a snapshot's manifest states: the log (its
// origin), the object's name, the sequence it covers, the global chain
// there, and the SHA-256 of its bytes.
func manifestText(origin, name string, seq uint64, chain events.Hash, sum [32]byte) string {
	return fmt.Sprintf("keytrail/snapshot/v1\n%s\n%s\n%d\n%s\n%s\n", origin, name, seq,
		base64.StdEncoding.EncodeToString(chain[:]), base64.StdEncoding.EncodeToString(sum[:]))
}

// OpenSnapshots opens (creating if need be) the snapshot buckets for
// writing. node names this process for the writer lease.
func OpenSnapshots(ctx context.Context, js jetstream.JetStream, replicas int, node string) (*Snapshots, error) {
	replicas = max(replicas, 1)
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: events.SnapshotBucket,
		Description: "Keytrail read-model snapshots", Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("readmodel: snapshot bucket: %w", err)
	}
	lease, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.LeaseBucket,
		Description: "Keytrail snapshot writer leases", TTL: leaseTTL, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("readmodel: lease bucket: %w", err)
	}
	return &Snapshots{obj: obj, lease: lease, node: node}, nil
}

// Save writes the model's catalog, if this node holds (or can take) the
// writer lease: a full model as both the full snapshot and the
// verification one (the gateways'), a verification-only model as the
// latter. It returns the sequence the snapshots cover.
func (s *Snapshots) Save(ctx context.Context, m *Model) (uint64, error) {
	if err := s.acquire(ctx); err != nil {
		return 0, err
	}
	var full, verify bytes.Buffer
	var seq uint64
	var chain events.Hash
	var err error
	m.Read(func(c *projections.Catalog) {
		seq, chain = c.Seq, c.Chain
		if s.key != nil && !c.ChainKnown() {
			err = errors.New("readmodel: the catalog's chain is not known: no signed snapshot of it")
			return
		}
		if err = c.WriteVerificationSnapshot(&verify); err == nil && !c.VerifyOnly() {
			err = c.WriteSnapshot(&full)
		}
	})
	if err != nil {
		return 0, err
	}
	for name, b := range map[string]*bytes.Buffer{VerificationSnapshot: &verify, FullSnapshot: &full} {
		if b.Len() == 0 {
			continue
		}
		meta := map[string]string{"seq": strconv.FormatUint(seq, 10), "node": s.node}
		if s.key != nil {
			note, err := events.SignNote(s.key, manifestText(s.origin, name, seq, chain, sha256.Sum256(b.Bytes())))
			if err != nil {
				return 0, fmt.Errorf("readmodel: sign snapshot %s: %w", name, err)
			}
			meta[manifestKey] = base64.StdEncoding.EncodeToString(note)
		}
		_, err = s.obj.Put(ctx, jetstream.ObjectMeta{Name: name, Description: "catalog as of seq " + strconv.FormatUint(seq, 10),
			Metadata: meta}, b)
		if err != nil {
			return 0, fmt.Errorf("readmodel: save snapshot %s: %w", name, err)
		}
	}
	return seq, nil
}

// acquire takes the writer lease, or renews it; the key expires with the
// bucket's TTL when its holder stops renewing.
func (s *Snapshots) acquire(ctx context.Context) error {
	const key = "writer"
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

// SnapshotLog is what a snapshot is checked against: the event store.
type SnapshotLog interface {
	LastSeq(ctx context.Context, filter string) (uint64, error)
	LastAsOf(ctx context.Context, subjects []string, upTo uint64) (map[string]store.AsOf, error)
	Load(ctx context.Context, tenant string, agg events.Aggregate) (store.History, error)
}

// LoadSnapshot returns the latest snapshot of the kind of catalog m keeps
// (nil when there is none, or when m serves only some tenants: filters),
// after checking it against the log (CheckSnapshot). It never writes:
// gateways may call it with read-only permissions.
func LoadSnapshot(ctx context.Context, js jetstream.JetStream, log SnapshotLog, m *Model, filters []string) (*projections.Catalog, error) {
	if len(filters) > 0 {
		return nil, nil
	}
	obj, err := js.ObjectStore(ctx, events.SnapshotBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("readmodel: snapshot bucket: %w", err)
	}
	name := FullSnapshot
	if m.VerifyOnly() {
		name = VerificationSnapshot
	}
	b, info, err := getObject(ctx, obj, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("readmodel: load snapshot: %w", err)
	}
	var manifest string
	if m.trust != nil {
		if manifest, err = openManifest(ctx, log, m.trust, info.Metadata[manifestKey]); err != nil {
			return nil, err
		}
	}
	c, err := projections.DecodeSnapshot(b)
	if err != nil {
		return nil, err
	}
	if c.VerifyOnly() != m.VerifyOnly() {
		return nil, fmt.Errorf("readmodel: snapshot %s holds another kind of catalog", name)
	}
	if m.trust == nil {
		// Unsigned: trusted only as far as a sample of it agrees with the log.
		if err := CheckSnapshot(ctx, log, c, snapshotSample); err != nil {
			return nil, err
		}
		return c, nil
	}
	str, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, fmt.Errorf("readmodel: load snapshot: %w", err)
	}
	origin := trust.Origin(str.CachedInfo().Created)
	if !c.ChainKnown() || manifest != manifestText(origin, name, c.Seq, c.Chain, sha256.Sum256(b)) {
		return nil, fmt.Errorf("%w: its signed manifest is of another log, other bytes, another sequence or another chain", ErrSnapshotUnsigned)
	}
	// Signed by a signer of this log, as of a sequence it holds: what the
	// signer vouches for needs no sample (a signer could as well sign
	// events).
	if last := str.CachedInfo().State.LastSeq; c.Seq > last {
		return nil, fmt.Errorf("%w: it covers sequence %d, but the stream ends at %d", ErrSnapshotInconsistent, c.Seq, last)
	}
	return c, nil
}

// getObject reads an object whole into a buffer of its size (GetBytes
// grows one by doubling: a hundred megabytes copied again and again).
func getObject(ctx context.Context, obj jetstream.ObjectStore, name string) ([]byte, *jetstream.ObjectInfo, error) {
	r, err := obj.Get(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	info, err := r.Info()
	if err != nil {
		return nil, nil, err
	}
	if info.Size > maxSnapshotSize {
		return nil, nil, fmt.Errorf("snapshot %s is %d bytes, more than any catalog makes", name, info.Size)
	}
	b := make([]byte, info.Size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, nil, err
	}
	return b, info, nil
}

// maxSnapshotSize bounds what a node allocates for a snapshot (a forged
// object could claim any size).
const maxSnapshotSize = 16 << 30

// CheckSnapshot trusts c only if it is consistent with the log: it covers
// no sequence past the stream's last, and the chain heads of a sample of
// sample aggregates (all of them when fewer) are the hashes of their last
// messages in the stream as of c.Seq. A head that differs because the
// stream's message there did not apply (one of c's Problems) is no
// inconsistency.
func CheckSnapshot(ctx context.Context, log SnapshotLog, c *projections.Catalog, sample int) error {
	last, err := log.LastSeq(ctx, "")
	if err != nil {
		return fmt.Errorf("readmodel: check snapshot: %w", err)
	}
	if c.Seq > last {
		return fmt.Errorf("%w: it covers sequence %d, but the stream ends at %d", ErrSnapshotInconsistent, c.Seq, last)
	}
	type head struct {
		subject string
		hash    events.Hash
	}
	var picked []head
	seen := 0
	c.EachHead(func(tenant string, a events.Aggregate, h events.Hash) {
		seen++
		i := len(picked)
		if i >= sample {
			if i = rand.IntN(seen); i >= sample {
				return
			}
		}
		subj, err := events.Subject(tenant, a)
		if err != nil {
			subj = "" // an id no subject can hold: never in the stream
		}
		if i == len(picked) {
			picked = append(picked, head{subj, h})
		} else {
			picked[i] = head{subj, h}
		}
	})
	subjects := make([]string, 0, len(picked))
	for _, p := range picked {
		if p.subject == "" {
			return fmt.Errorf("%w: it holds an aggregate no subject can name", ErrSnapshotInconsistent)
		}
		subjects = append(subjects, p.subject)
	}
	got, err := log.LastAsOf(ctx, subjects, c.Seq)
	if err != nil {
		return fmt.Errorf("readmodel: check snapshot: %w", err)
	}
	skipped := func(seq uint64) bool {
		return slices.ContainsFunc(c.Problems, func(p projections.Problem) bool { return p.Seq == seq })
	}
	for _, p := range picked {
		m := got[p.subject]
		var inStream events.Hash
		if m.Seq > 0 && m.Err == nil {
			inStream = m.Event.Hash
		}
		if inStream != p.hash && !(m.Seq > 0 && skipped(m.Seq)) {
			return fmt.Errorf("%w: the chain head of %s is not the stream's (its last message by seq %d is seq %d)",
				ErrSnapshotInconsistent, p.subject, c.Seq, m.Seq)
		}
	}
	return nil
}

// Restore makes the model start from c (a snapshot) instead of an empty
// catalog: Run then tails the log from c.Seq+1. Call it before Run.
func (m *Model) Restore(c *projections.Catalog) {
	if m.trust != nil {
		c.SetTrust(m.trust)
	}
	m.mu.Lock()
	m.cat = c
	m.mu.Unlock()
	m.applied.Store(c.Seq)
}
