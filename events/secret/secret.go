// Package secret is the format of Keytrail's API key secrets:
// <prefix><random><checksum>, the random part at least 30 base62 characters
// from a CSPRNG (≥ 178 bits), the checksum the CRC32 of everything before it
// in 6 base62 characters, so that typos and look-alikes are refused offline.
//
// A Secret never prints: it formats, logs and marshals as its redacted hint.
// Only its SHA-256 (events.SecretHash) is ever stored. The package is pure
// (no I/O besides the randomness source it is given) so that verification in
// projections can parse secrets.
package secret

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"

	"github.com/keytrail/keytrail/events"
)

// Sizes of the format.
const (
	DefaultPrefix = "kt_"
	RandomLen     = 30 // generated; ≥ 178 bits
	MaxRandomLen  = 64 // accepted, for longer secrets issued by a later version
	ChecksumLen   = 6  // base62 of a CRC32, zero-padded
	MaxPrefixLen  = 16
	hintTail      = 4
)

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Errors of Parse. Each wraps ErrMalformed.
var (
	// ErrMalformed: not a secret of this deployment (verification: MALFORMED).
	ErrMalformed = errors.New("secret: malformed")
	errPrefix    = fmt.Errorf("%w: wrong prefix", ErrMalformed)
	errLength    = fmt.Errorf("%w: wrong length", ErrMalformed)
	errAlphabet  = fmt.Errorf("%w: character outside base62", ErrMalformed)
	errChecksum  = fmt.Errorf("%w: checksum mismatch", ErrMalformed)
)

// Secret is a parsed or generated API key secret.
type Secret struct{ s string }

// ValidPrefix reports whether p can prefix secrets: 1 to 15 lower-case
// letters or digits, starting with a letter, then '_'.
func ValidPrefix(p string) bool {
	if len(p) < 2 || len(p) > MaxPrefixLen || p[len(p)-1] != '_' || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 1; i < len(p)-1; i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Generate makes a new secret with prefix from the randomness in rand
// (crypto/rand.Reader in production).
func Generate(prefix string, rand io.Reader) (Secret, error) {
	if !ValidPrefix(prefix) {
		return Secret{}, fmt.Errorf("secret: invalid prefix %q", prefix)
	}
	b := make([]byte, 0, len(prefix)+RandomLen+ChecksumLen)
	b = append(b, prefix...)
	// Rejection sampling: only bytes below 248 (= 4 × 62) are used, so every
	// character is uniform over the alphabet.
	var buf [64]byte
	for len(b) < len(prefix)+RandomLen {
		if _, err := io.ReadFull(rand, buf[:]); err != nil {
			return Secret{}, fmt.Errorf("secret: randomness: %w", err)
		}
		for _, r := range buf {
			if r < 248 && len(b) < len(prefix)+RandomLen {
				b = append(b, alphabet[r%62])
			}
		}
	}
	b = appendChecksum(b)
	return Secret{s: string(b)}, nil
}

func appendChecksum(b []byte) []byte {
	c := checksum(string(b))
	return append(b, c[:]...)
}

// slicing8 are the tables of slicing-by-8 CRC32 (IEEE): eight bytes a step.
var slicing8 = func() (t [8][256]uint32) {
	t[0] = *crc32.IEEETable
	for i := range 256 {
		crc := t[0][i]
		for j := 1; j < 8; j++ {
			crc = t[0][crc&0xff] ^ crc>>8
			t[j][i] = crc
		}
	}
	return t
}()

// crc is the CRC32 (IEEE) of s, computed over the string in place (the
// standard library's would copy it to the heap), eight bytes at a time:
// verification parses a secret per request.
func crc(s string) uint32 {
	c := ^uint32(0)
	for len(s) >= 8 {
		c ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		c = slicing8[7][c&0xff] ^ slicing8[6][c>>8&0xff] ^ slicing8[5][c>>16&0xff] ^ slicing8[4][c>>24] ^
			slicing8[3][s[4]] ^ slicing8[2][s[5]] ^ slicing8[1][s[6]] ^ slicing8[0][s[7]]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		c = crc32.IEEETable[byte(c)^s[i]] ^ c>>8
	}
	return ^c
}

// checksum is the CRC32 of s in six base62 digits.
func checksum(s string) (c [ChecksumLen]byte) {
	sum := uint64(crc(s))
	for i := ChecksumLen - 1; i >= 0; i-- {
		c[i] = alphabet[sum%62]
		sum /= 62
	}
	return c
}

// Parse checks s offline: prefix, length, alphabet and checksum. It never
// echoes s in its errors.
func Parse(s, prefix string) (Secret, error) {
	sec, err := ParseShape(s, prefix)
	if err != nil {
		return Secret{}, err
	}
	if !sec.ChecksumOK() {
		return Secret{}, errChecksum
	}
	return sec, nil
}

// ParseShape is Parse without the checksum: prefix, length and alphabet.
// Verification uses it on its hot path and checks the checksum only of a
// secret whose hash it does not know: a known secret's checksum was checked
// when the secret was generated, so a secret that hashes to a known hash
// has a valid one.
func ParseShape(s, prefix string) (Secret, error) {
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return Secret{}, errPrefix
	}
	n := len(s) - len(prefix) - ChecksumLen
	if n < RandomLen || n > MaxRandomLen {
		return Secret{}, errLength
	}
	for i := len(prefix); i < len(s); i++ {
		if !base62[s[i]] {
			return Secret{}, errAlphabet
		}
	}
	return Secret{s: s}, nil
}

// ChecksumOK reports whether a secret from ParseShape carries the checksum
// of the rest of it.
func (s Secret) ChecksumOK() bool {
	if len(s.s) < ChecksumLen {
		return false
	}
	// Read the presented checksum as a number rather than spell out the
	// computed one: six multiply-adds instead of six divisions.
	var presented uint64
	for _, ch := range []byte(s.s[len(s.s)-ChecksumLen:]) {
		presented = presented*62 + uint64(digit[ch])
	}
	return presented == uint64(crc(s.s[:len(s.s)-ChecksumLen]))
}

// digit maps a base62 character to its value.
var digit = func() (t [256]uint8) {
	for i := range len(alphabet) {
		t[alphabet[i]] = uint8(i)
	}
	return t
}()

// base62 marks the bytes of the alphabet.
var base62 = func() (t [256]bool) {
	for i := range len(alphabet) {
		t[alphabet[i]] = true
	}
	return t
}()

// Hash is the SHA-256 of the secret: the only form ever stored.
func (s Secret) Hash() events.SecretHash {
	// A copy on the stack: converting the string would allocate, and
	// verification hashes a secret per request.
	var buf [MaxPrefixLen + MaxRandomLen + ChecksumLen]byte
	if len(s.s) <= len(buf) {
		return sha256.Sum256(append(buf[:0], s.s...))
	}
	return sha256.Sum256([]byte(s.s))
}

// Hint is the prefix and the last four characters (of the checksum), safe to
// show: "kt_…x9Qz".
func (s Secret) Hint() string {
	if len(s.s) < hintTail {
		return ""
	}
	i := 0
	for i < len(s.s) && s.s[i] != '_' {
		i++
	}
	return s.s[:i+1] + "…" + s.s[len(s.s)-hintTail:]
}

// Reveal returns the secret itself. Call it once: to answer the request that
// issued or rotated the key.
func (s Secret) Reveal() string { return s.s }

// IsZero reports whether s holds no secret.
func (s Secret) IsZero() bool { return s.s == "" }

// String redacts: secrets never reach logs through fmt.
func (s Secret) String() string { return s.Hint() + " (redacted)" }

// GoString redacts for %#v too.
func (s Secret) GoString() string { return s.String() }

// Format redacts for every verb.
func (s Secret) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// LogValue redacts in slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText redacts in JSON and any text encoding; Reveal is the only way
// to the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
