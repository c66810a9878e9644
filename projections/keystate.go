package projections

import (
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
)

// instant is a time as Unix nanoseconds, saturated at the ends of int64
// (years 1678 and 2262): verification compares it with a now that lies well
// inside, so the saturation never changes a decision, and both kinds of
// catalog decide on it alike.
type instant int64

const (
	never  instant = math.MaxInt64 // no expiry, no end of grace
	always instant = math.MinInt64 // no not-before
)

// instantOf saturates t into an instant.
func instantOf(t time.Time) instant {
	const limit = math.MaxInt64/1_000_000_000 - 1 // seconds either side of 1970 that fit
	switch sec := t.Unix(); {
	case sec < -limit:
		return always
	case sec > limit:
		return never
	default:
		return instant(sec*1e9 + int64(t.Nanosecond()))
	}
}

func instantOr(t *time.Time, none instant) instant {
	if t == nil {
		return none
	}
	return instantOf(*t)
}

// timeOr is the time an instant stands for, nil for none.
func (i instant) timeOr(none instant) *time.Time {
	if i == none {
		return nil
	}
	t := time.Unix(0, int64(i)).UTC()
	return &t
}

// keyStatus is KeyStatus in a byte; 0: not issued.
type keyStatus uint8

const (
	keyNone keyStatus = iota
	keyActive
	keySuspended
	keyRevoked
)

var keyStatuses = [...]KeyStatus{keyNone: "", keyActive: KeyActive, keySuspended: KeySuspended, keyRevoked: KeyRevoked}

func keyStatusOf(s KeyStatus) keyStatus {
	for i, v := range keyStatuses {
		if v == s {
			return keyStatus(i)
		}
	}
	return keyNone
}

// keyState is how a catalog keeps a key: what verification reads, packed
// (times as instants, the status in a byte, scopes interned, tenant and user
// as pointers to their states), and the attributes only the admin side
// shows to one side. A verification-only catalog keeps no admin part: at a
// million keys it is the difference between fitting a gateway's memory
// budget and not.
type keyState struct {
	hash   events.SecretHash
	head   events.Hash
	id     string
	tenant *tenantEntry
	user   *User // the user's state, a placeholder (with its id) until the user has events
	scopes *[]string
	rate   *events.RateLimit
	// policies are the policies the key references (interned, shared).
	policies *policyList

	notBefore, expiresAt, graceUntil, created instant
	issued, attrsBy, statusBy, rotatedBy      Evidence
	status                                    keyStatus
	admin                                     *keyAdmin
}

// keyAdmin is what only the admin side reads: names, metadata, rotation
// links and exact times.
type keyAdmin struct {
	name, hint, rotatedFrom, rotatedTo string
	metadata                           map[string]string
	notBefore, expiresAt, graceUntil   *time.Time
	createdAt                          time.Time
}

func (k *keyState) exists() bool { return k.status != keyNone }

// version is the sequence of the key's last applied event: every key event
// sets one of the evidence fields to itself.
func (k *keyState) version() uint64 {
	return max(k.issued.Seq(), k.attrsBy.Seq(), k.statusBy.Seq(), k.rotatedBy.Seq())
}

func (k *keyState) scopeList() []string {
	if k.scopes == nil {
		return nil
	}
	return *k.scopes
}

// expand returns the key as the admin side and the aggregate's transitions
// see it. A verification-only key has no name, hint, metadata or rotation
// links, and its times are those of its instants.
func (k *keyState) expand() Key {
	if !k.exists() { // a placeholder holding a chain head
		return Key{ID: k.id, Head: k.head}
	}
	out := Key{ID: k.id, Scopes: k.scopeList(), Status: keyStatuses[k.status],
		SecretHash: k.hash, RateLimit: k.rate, Version: k.version(), Policies: slices.Clone(k.policyIDs()),
		Issued: k.issued, AttrsBy: k.attrsBy, StatusBy: k.statusBy, RotatedBy: k.rotatedBy, Head: k.head}
	if k.tenant != nil {
		out.Tenant, out.User = k.tenant.id, k.user.ID
	}
	if a := k.admin; a != nil {
		out.Name, out.Hint, out.RotatedFrom, out.RotatedTo, out.Metadata = a.name, a.hint, a.rotatedFrom, a.rotatedTo, a.metadata
		out.NotBefore, out.ExpiresAt, out.GraceUntil, out.CreatedAt = a.notBefore, a.expiresAt, a.graceUntil, a.createdAt
		return out
	}
	out.NotBefore, out.ExpiresAt, out.GraceUntil = k.notBefore.timeOr(always), k.expiresAt.timeOr(never), k.graceUntil.timeOr(never)
	if k.exists() {
		out.CreatedAt = time.Unix(0, int64(k.created)).UTC()
	}
	return out
}

// set makes k hold key (the chain head excepted, which the catalog keeps).
func (c *Catalog) set(k *keyState, key *Key) {
	k.hash, k.rate, k.status = key.SecretHash, c.internRate(key.RateLimit), keyStatusOf(key.Status)
	k.scopes = c.intern(key.Scopes)
	k.policies = c.internPolicies(k.tenant, key.Policies)
	k.notBefore, k.expiresAt, k.graceUntil = instantOr(key.NotBefore, always), instantOr(key.ExpiresAt, never), instantOr(key.GraceUntil, never)
	k.created = instantOf(key.CreatedAt)
	k.issued, k.attrsBy, k.statusBy, k.rotatedBy = key.Issued, key.AttrsBy, key.StatusBy, key.RotatedBy
	if c.verifyOnly {
		k.admin = nil
		return
	}
	k.admin = &keyAdmin{name: key.Name, hint: key.Hint, rotatedFrom: key.RotatedFrom, rotatedTo: key.RotatedTo,
		metadata: key.Metadata, notBefore: key.NotBefore, expiresAt: key.ExpiresAt, graceUntil: key.GraceUntil, createdAt: key.CreatedAt}
}

// intern returns the catalog's copy of a scope list: most keys share a few,
// and a key's scopes are never changed in place (an update replaces them).
// Looking one up allocates nothing.
func (c *Catalog) intern(scopes []string) *[]string {
	if len(scopes) == 0 {
		return nil
	}
	var buf [256]byte
	joined := joinScopes(buf[:0], scopes)
	if s, ok := c.scopes[string(joined)]; ok {
		return s
	}
	s := new([]string)
	*s = scopes
	c.scopes[string(joined)] = s
	return s
}

// internRate returns the catalog's copy of a rate limit (most keys share
// a few).
func (c *Catalog) internRate(r *events.RateLimit) *events.RateLimit {
	if r == nil {
		return nil
	}
	if s, ok := c.rates[*r]; ok {
		return s
	}
	c.rates[*r] = r
	return r
}

func joinScopes(b []byte, scopes []string) []byte {
	for i, s := range scopes {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, s...)
	}
	return b
}

// keyTable finds keys by the SHA-256 of their secret: open addressing with
// linear probing over a power-of-two array, at most half full. The hash is
// uniform already; a random per-table seed keeps anyone who can choose
// hashes (a forged event) from aiming them at one slot.
type keyTable struct {
	slots []*keyState
	n     int
	shift uint
	seed  uint64
}

func (t *keyTable) slot(h *events.SecretHash) uint64 {
	return ((binary.LittleEndian.Uint64(h[:8]) ^ t.seed) * 0x9E3779B97F4A7C15) >> t.shift
}

// find returns the key whose hash is h, comparing in constant time.
func (t *keyTable) find(h *events.SecretHash) *keyState {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.slot(h); ; i = (i + 1) & mask {
		k := t.slots[i]
		if k == nil {
			return nil
		}
		if k.hash.Equal(*h) {
			return k
		}
	}
}

// add adds k unless a key with its hash is there already (then it reports
// false and changes nothing).
func (t *keyTable) add(k *keyState) bool {
	if 2*(t.n+1) > len(t.slots) {
		t.grow(t.n + 1)
	}
	mask := uint64(len(t.slots) - 1)
	i := t.slot(&k.hash)
	for ; t.slots[i] != nil; i = (i + 1) & mask {
		if t.slots[i].hash == k.hash {
			return false
		}
	}
	t.slots[i] = k
	t.n++
	return true
}

func (t *keyTable) put(k *keyState) {
	mask := uint64(len(t.slots) - 1)
	i := t.slot(&k.hash)
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = k
}

// grow makes room for at least n keys at most half full.
func (t *keyTable) grow(n int) {
	size := max(16, 1<<bits.Len(uint(2*n-1)))
	if size <= len(t.slots) {
		return
	}
	old := t.slots
	if t.seed == 0 {
		t.seed = rand.Uint64() | 1
	}
	t.slots, t.shift = make([]*keyState, size), uint(64-bits.TrailingZeros(uint(size)))
	for _, k := range old {
		if k != nil {
			t.put(k)
		}
	}
}
