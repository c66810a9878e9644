package projections

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
)

// The snapshot encoding: a magic string, the format, then the catalog with
// every map in key order, so that equal catalogs encode to equal bytes
// (Digest). Integers are varints; strings are a length and bytes; times are
// Unix seconds and nanoseconds. A reader refuses another format (and the
// node folds the log from the start instead).
const (
	snapshotMagic  = "KTSNAP"
	snapshotFormat = 14
)

// WriteSnapshot encodes the catalog: everything a node needs to resume from
// Seq+1 without folding the log from the start.
func (c *Catalog) WriteSnapshot(w io.Writer) error { return c.writeSnapshot(w, c.verifyOnly) }

// WriteVerificationSnapshot encodes the catalog as the verification-only
// catalog of the same events would be (byte for byte): a control node
// writes the gateways' snapshot from its own full catalog, so that gateways
// never write to the snapshot store.
func (c *Catalog) WriteVerificationSnapshot(w io.Writer) error { return c.writeSnapshot(w, true) }

func (c *Catalog) writeSnapshot(w io.Writer, verifyOnly bool) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	e := encoder{w: bw, verifyOnly: verifyOnly}
	e.raw(snapshotMagic)
	e.uint(snapshotFormat)
	e.bool(verifyOnly)
	e.uint(c.Seq)
	e.bytes(c.Chain[:])
	e.bool(c.chainGap)
	e.uint(c.Skipped)
	e.uint(uint64(len(c.Problems)))
	for _, p := range c.Problems {
		e.uint(p.Seq)
		e.str(p.Err.Error())
	}
	e.bytes(c.trustHead[:])
	e.uint(c.signedFrom)
	e.uint(uint64(len(c.signers)))
	for _, id := range slices.Sorted(maps.Keys(c.signers)) {
		s := c.signers[id]
		e.str(id)
		e.str(string(s.pub))
		e.str(s.role)
		e.uint(s.added)
		e.uint(s.removed)
	}
	e.uint(uint64(len(c.tenants)))
	for _, id := range slices.Sorted(maps.Keys(c.tenants)) {
		e.tenant(c.tenants[id])
	}
	if e.err == nil {
		e.err = bw.Flush()
	}
	if e.err != nil {
		return fmt.Errorf("projections: snapshot: %w", e.err)
	}
	return nil
}

// Digest is the SHA-256 of the catalog's snapshot: equal catalogs, however
// they were built (incrementally, by a full replay, from a snapshot and a
// tail), have equal digests.
func (c *Catalog) Digest() [32]byte {
	h := sha256.New()
	if err := c.WriteSnapshot(h); err != nil {
		panic(err) // a hash never fails to write
	}
	return [32]byte(h.Sum(nil))
}

type encoder struct {
	// verifyOnly leaves the keys' admin-only attributes out.
	verifyOnly bool
	w          *bufio.Writer
	buf        [binary.MaxVarintLen64]byte
	err        error
}

func (e *encoder) raw(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

func (e *encoder) bytes(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *encoder) uint(v uint64) { e.bytes(binary.AppendUvarint(e.buf[:0], v)) }
func (e *encoder) int(v int64)   { e.bytes(binary.AppendVarint(e.buf[:0], v)) }
func (e *encoder) str(s string)  { e.uint(uint64(len(s))); e.raw(s) }

func (e *encoder) bool(b bool) {
	if b {
		e.uint(1)
	} else {
		e.uint(0)
	}
}

func (e *encoder) strs(ss []string) {
	e.uint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

func (e *encoder) time(t time.Time) { e.int(t.Unix()); e.uint(uint64(t.Nanosecond())) }

func (e *encoder) timePtr(t *time.Time) {
	e.bool(t != nil)
	if t != nil {
		e.time(*t)
	}
}

func (e *encoder) evidence(ev Evidence) { e.uint(uint64(ev) >> evidenceSeqBits); e.uint(ev.Seq()) }

func (e *encoder) rate(r *events.RateLimit) {
	e.bool(r != nil)
	if r != nil {
		e.uint(math.Float64bits(r.PerSecond))
		e.int(int64(r.Burst))
	}
}

func (e *encoder) tenant(t *tenantEntry) {
	e.str(t.id)
	e.str(t.ID)
	e.str(t.Name)
	e.str(string(t.Status))
	e.time(t.CreatedAt)
	e.time(t.KeysRevokedBefore)
	e.uint(t.Version)
	e.evidence(t.Created)
	e.evidence(t.StatusBy)
	e.evidence(t.RevokedBy)
	e.bytes(t.Head[:])
	e.strs(t.Notices.ExpiryBefore)
	e.str(t.Notices.UnusedAfter)

	e.uint(uint64(len(t.users)))
	for _, id := range slices.Sorted(maps.Keys(t.users)) {
		u := t.users[id]
		e.str(id)
		e.str(u.Tenant)
		e.str(u.Name)
		e.str(string(u.Status))
		e.time(u.KeysRevokedBefore)
		e.time(u.CreatedAt)
		e.uint(u.Version)
		e.evidence(u.Created)
		e.evidence(u.StatusBy)
		e.evidence(u.RevokedBy)
		e.bytes(u.Head[:])
	}

	e.uint(uint64(len(t.apis)))
	for _, id := range slices.Sorted(maps.Keys(t.apis)) {
		a := t.apis[id]
		e.str(id)
		e.str(a.Tenant)
		e.str(a.ID)
		e.str(a.Name)
		e.str(a.PathPrefix)
		e.strs(a.Upstreams)
		e.strs(a.Scopes)
		e.rate(a.RateLimit)
		e.str(string(a.Status))
		e.timePtr(a.Sunset)
		e.time(a.DeprecatedAt)
		e.time(a.CreatedAt)
		e.uint(a.Version)
		e.evidence(a.AttrsBy)
		e.evidence(a.StatusBy)
		e.bytes(a.Head[:])
	}

	e.uint(uint64(len(t.webhooks)))
	for _, id := range slices.Sorted(maps.Keys(t.webhooks)) {
		w := t.webhooks[id]
		e.str(id)
		e.str(w.Tenant)
		e.str(w.ID)
		e.str(w.URL)
		e.strs(w.Types)
		e.str(string(w.Status))
		e.str(w.SecretID)
		e.str(w.PreviousSecretID)
		e.time(w.PreviousUntil)
		e.time(w.CreatedAt)
		e.uint(w.Version)
		e.evidence(w.Created)
		e.evidence(w.AttrsBy)
		e.evidence(w.StatusBy)
		e.bytes(w.Head[:])
	}

	// Policies, placeholders that keys reference included.
	e.uint(uint64(len(t.policies)))
	for _, id := range slices.Sorted(maps.Keys(t.policies)) {
		p := t.policies[id]
		e.str(id)
		e.str(p.Name)
		e.strs(p.Scopes)
		e.rate(p.RateLimit)
		e.int(int64(p.MaxTTL))
		e.strs(p.APIs)
		e.str(string(p.Status))
		e.uint(uint64(p.Revision))
		e.time(p.CreatedAt)
		e.uint(p.Version)
		e.evidence(p.Created)
		e.evidence(p.AttrsBy)
		e.evidence(p.StatusBy)
		e.bytes(p.Head[:])
	}

	// Keys: their ids in one string (restored as one allocation), the scope
	// lists they use, numbered in order of first use, then each key.
	ids := slices.Sorted(maps.Keys(t.keys))
	e.uint(uint64(len(ids)))
	n := 0
	for _, id := range ids {
		n += len(id)
	}
	e.uint(uint64(n))
	for _, id := range ids {
		e.raw(id)
	}
	scopeIndex := map[*[]string]uint64{}
	var lists []*[]string
	for _, id := range ids {
		if s := t.keys[id].scopes; s != nil {
			if _, ok := scopeIndex[s]; !ok {
				scopeIndex[s] = uint64(len(lists)) + 1
				lists = append(lists, s)
			}
		}
	}
	e.uint(uint64(len(lists)))
	for _, s := range lists {
		e.strs(*s)
	}
	for _, id := range ids {
		k := t.keys[id]
		e.uint(uint64(len(id)))
		e.uint(uint64(k.status))
		e.bytes(k.head[:])
		if !k.exists() {
			continue
		}
		e.str(k.user.ID)
		e.bytes(k.hash[:])
		e.uint(scopeIndex[k.scopes])
		e.strs(k.policyIDs())
		e.rate(k.rate)
		e.int(int64(k.notBefore))
		e.int(int64(k.expiresAt))
		e.int(int64(k.graceUntil))
		e.int(int64(k.created))
		e.evidence(k.issued)
		e.evidence(k.attrsBy)
		e.evidence(k.statusBy)
		e.evidence(k.rotatedBy)
		a := k.admin
		if e.verifyOnly {
			a = nil
		}
		e.bool(a != nil)
		if a != nil {
			e.str(a.name)
			e.str(a.hint)
			e.str(a.rotatedFrom)
			e.str(a.rotatedTo)
			e.uint(uint64(len(a.metadata)))
			for _, mk := range slices.Sorted(maps.Keys(a.metadata)) {
				e.str(mk)
				e.str(a.metadata[mk])
			}
			e.timePtr(a.notBefore)
			e.timePtr(a.expiresAt)
			e.timePtr(a.graceUntil)
			e.time(a.createdAt)
		}
	}
}

// ErrSnapshotFormat: a snapshot of another format.
var ErrSnapshotFormat = errors.New("projections: unknown snapshot format")

// errSnapshot: a snapshot that does not decode.
var errSnapshot = errors.New("projections: damaged snapshot")

// ReadSnapshot restores a catalog written by WriteSnapshot (of the same
// kind: full or verification-only), rebuilding its indexes. The snapshot
// comes from the node's own object store, but it is still checked rather
// than trusted: a bad one is an error, never a panic.
func ReadSnapshot(r io.Reader) (*Catalog, error) {
	var data []byte
	var err error
	if l, ok := r.(interface{ Len() int }); ok { // a bytes.Reader or Buffer: no regrowing
		data = make([]byte, l.Len())
		_, err = io.ReadFull(r, data)
	} else {
		data, err = io.ReadAll(r)
	}
	if err != nil {
		return nil, fmt.Errorf("projections: read snapshot: %w", err)
	}
	return DecodeSnapshot(data)
}

// DecodeSnapshot is ReadSnapshot of bytes in memory (the catalog keeps no
// reference to them).
func DecodeSnapshot(data []byte) (*Catalog, error) {
	d := decoder{b: data}
	if string(d.take(len(snapshotMagic))) != snapshotMagic {
		return nil, fmt.Errorf("%w: no snapshot header", ErrSnapshotFormat)
	}
	if f := d.uint(); f != snapshotFormat {
		return nil, fmt.Errorf("%w %d", ErrSnapshotFormat, f)
	}
	c := NewCatalog()
	c.verifyOnly = d.bool()
	c.Seq = d.uint()
	c.Chain = d.hash()
	c.chainGap = d.bool()
	c.Skipped = d.uint()
	for range d.count(2) {
		c.Problems = append(c.Problems, Problem{Seq: d.uint(), Err: errors.New(d.str())})
	}
	c.trustHead = d.hash()
	c.signedFrom = d.uint()
	for range d.count(4) {
		id, pub, role, added, removed := d.str(), d.str(), d.str(), d.uint(), d.uint()
		if len(pub) != ed25519.PublicKeySize || events.SignerID(ed25519.PublicKey(pub)) != id ||
			(role != events.SignerRoleEvents && role != events.SignerRoleDecisions) {
			d.fail("bad signer")
			break
		}
		c.signers[id] = &signerSpan{pub: ed25519.PublicKey(pub), role: role, added: added, removed: removed}
	}
	for range d.count(1) {
		if d.err != nil {
			break
		}
		d.tenant(c)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

// decoder reads a snapshot; its first error sticks, and every read after it
// returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(why string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errSnapshot, why)
	}
	d.b = nil
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		d.fail("truncated")
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bool() bool {
	switch d.uint() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad flag")
	return false
}

// count reads a number of items, each at least min bytes long: no count
// larger than the rest of the snapshot allocates anything.
func (d *decoder) count(min int) int {
	n := d.uint()
	if n > uint64(len(d.b)/min) {
		d.fail("count beyond the end")
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte { return d.take(d.count(1)) }
func (d *decoder) str() string   { return string(d.bytes()) }

func (d *decoder) strs() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *decoder) time() time.Time {
	sec, nsec := d.int(), d.uint()
	if nsec >= 1e9 {
		d.fail("bad time")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) timePtr() *time.Time {
	if !d.bool() {
		return nil
	}
	t := d.time()
	return &t
}

func (d *decoder) hash() (h [32]byte) {
	copy(h[:], d.take(32))
	return h
}

func (d *decoder) evidence() Evidence {
	typ, seq := d.uint(), d.uint()
	if typ > uint64(len(eventTypes)) || seq >= 1<<evidenceSeqBits {
		d.fail("bad evidence")
		return 0
	}
	return Evidence(seq | typ<<evidenceSeqBits)
}

func (d *decoder) rate() *events.RateLimit {
	if !d.bool() {
		return nil
	}
	return &events.RateLimit{PerSecond: math.Float64frombits(d.uint()), Burst: int(d.int())}
}

func (d *decoder) tenant(c *Catalog) {
	id := d.str()
	if _, dup := c.tenants[id]; dup {
		d.fail("tenant twice")
		return
	}
	t := c.tenant(id)
	t.ID, t.Name, t.Status = d.str(), d.str(), TenantStatus(d.str())
	t.CreatedAt, t.KeysRevokedBefore, t.Version = d.time(), d.time(), d.uint()
	t.Created, t.StatusBy, t.RevokedBy, t.Head = d.evidence(), d.evidence(), d.evidence(), d.hash()
	t.Notices.ExpiryBefore, t.Notices.UnusedAfter = d.strs(), d.str()

	for range d.count(1) {
		uid := d.str()
		u := userEntry(t, uid)
		u.Tenant, u.Name, u.Status = d.str(), d.str(), UserStatus(d.str())
		u.KeysRevokedBefore, u.CreatedAt, u.Version = d.time(), d.time(), d.uint()
		u.Created, u.StatusBy, u.RevokedBy, u.Head = d.evidence(), d.evidence(), d.evidence(), d.hash()
	}

	for range d.count(1) {
		aid := d.str()
		a := entry(t.apis, aid)
		a.Tenant, a.ID, a.Name, a.PathPrefix = d.str(), d.str(), d.str(), d.str()
		a.Upstreams, a.Scopes, a.RateLimit, a.Status = d.strs(), d.strs(), d.rate(), APIStatus(d.str())
		a.Sunset, a.DeprecatedAt, a.CreatedAt, a.Version = d.timePtr(), d.time(), d.time(), d.uint()
		a.AttrsBy, a.StatusBy, a.Head = d.evidence(), d.evidence(), d.hash()
		if d.err != nil || !a.Exists() {
			continue
		}
		if other, taken := c.prefix[a.PathPrefix]; taken {
			switch {
			case other.Status == APIRetired && a.Status != APIRetired: // reclaimed: the live one routes
				c.unsetPrefix(a.PathPrefix)
			case a.Status == APIRetired && other.Status != APIRetired:
				continue
			default:
				d.fail("two APIs hold " + a.PathPrefix)
				return
			}
		}
		c.setPrefix(a.PathPrefix, a)
	}

	for range d.count(1) {
		w := entry(t.webhooks, d.str())
		w.Tenant, w.ID, w.URL, w.Types, w.Status = d.str(), d.str(), d.str(), d.strs(), WebhookStatus(d.str())
		w.SecretID, w.PreviousSecretID, w.PreviousUntil, w.CreatedAt = d.str(), d.str(), d.time(), d.time()
		w.Version, w.Created, w.AttrsBy, w.StatusBy, w.Head = d.uint(), d.evidence(), d.evidence(), d.evidence(), d.hash()
	}

	for range d.count(1) {
		id := d.str()
		if !events.ValidPolicyID(id) {
			d.fail("bad policy id")
			return
		}
		p := policyEntry(t, id)
		p.Name, p.Scopes, p.RateLimit, p.MaxTTL, p.APIs = d.str(), d.strs(), d.rate(), time.Duration(d.int()), d.strs()
		p.Status, p.Revision, p.CreatedAt, p.Version = PolicyStatus(d.str()), int(d.uint()), d.time(), d.uint()
		p.Created, p.AttrsBy, p.StatusBy, p.Head = d.evidence(), d.evidence(), d.evidence(), d.hash()
	}

	n := d.count(33) // a key: at least its id's length, status and chain head
	ids := d.str()
	lists := make([]*[]string, d.count(1))
	for i := range lists {
		lists[i] = c.intern(d.strs())
	}
	states := make([]keyState, n) // one allocation for the tenant's keys
	if len(t.keys) == 0 {
		t.keys = make(map[string]*keyState, n)
	}
	c.byHash.grow(c.byHash.n + n)
	for i := range states {
		k := &states[i]
		idLen := d.uint()
		if d.err != nil || idLen > uint64(len(ids)) {
			d.fail("bad key id")
			return
		}
		id := ids[:idLen]
		ids = ids[idLen:]
		if _, dup := t.keys[id]; dup {
			d.fail("key twice")
			return
		}
		t.keys[id] = k
		k.status, k.head = keyStatus(d.uint()), d.hash()
		if k.status == keyNone {
			continue
		}
		if k.status > keyRevoked {
			d.fail("bad key status")
			return
		}
		k.id, k.tenant = id, t
		uid := d.bytes()
		if k.user = t.users[string(uid)]; k.user == nil {
			k.user = userEntry(t, string(uid))
		}
		k.hash = d.hash()
		if s := d.uint(); s > uint64(len(lists)) {
			d.fail("bad scope list")
			return
		} else if s > 0 {
			k.scopes = lists[s-1]
		}
		if pids := d.strs(); len(pids) > 0 {
			if len(pids) > events.MaxKeyPolicies || slices.ContainsFunc(pids, func(id string) bool { return !events.ValidPolicyID(id) }) {
				d.fail("bad policy list")
				return
			}
			k.policies = c.internPolicies(t, pids)
		}
		k.rate = c.internRate(d.rate())
		k.notBefore, k.expiresAt, k.graceUntil, k.created = instant(d.int()), instant(d.int()), instant(d.int()), instant(d.int())
		k.issued, k.attrsBy, k.statusBy, k.rotatedBy = d.evidence(), d.evidence(), d.evidence(), d.evidence()
		if d.bool() {
			a := &keyAdmin{name: d.str(), hint: d.str(), rotatedFrom: d.str(), rotatedTo: d.str()}
			if m := d.count(2); m > 0 {
				a.metadata = make(map[string]string, m)
				for range m {
					mk, mv := d.str(), d.str()
					a.metadata[mk] = mv
				}
			}
			a.notBefore, a.expiresAt, a.graceUntil, a.createdAt = d.timePtr(), d.timePtr(), d.timePtr(), d.time()
			k.admin = a
		}
		if d.err != nil {
			return
		}
		if !c.byHash.add(k) {
			d.fail("two keys share a secret hash")
			return
		}
	}
	if len(ids) != 0 {
		d.fail("key ids left over")
	}
}
