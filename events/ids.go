package events

import (
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"github.com/oklog/ulid/v2"
)

// Limits on identifiers. Every id becomes a NATS subject token, so each
// validator below also guarantees the token is safe: no '.', '*', '>',
// whitespace or control characters, never empty.
const (
	MaxTenantIDLen = 63
	MaxUserIDLen   = 64
	MaxAPIIDLen    = 63
	MaxActorLen    = 128
	MaxReasonLen   = 1024
	MaxCommandLen  = 128
	KeyIDPrefix    = "key_"
	// WebhookIDPrefix starts a webhook endpoint's id: "whk_" and a ULID.
	WebhookIDPrefix = "whk_"
)

// Byte classes, so that validating an id is one table lookup a byte: the
// decoder validates every id of every event it reads.
const (
	clsLower   = 1 << iota // a-z 0-9
	clsID                  // A-Z a-z 0-9 _ -
	clsULID                // Crockford base32, upper case
	clsCommand             // clsID and ':'
	clsPrint               // printable ASCII, 0x20-0x7e
)

var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		lower := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		alnum := lower || c >= 'A' && c <= 'Z'
		if lower {
			t[c] |= clsLower
		}
		if alnum || c == '_' || c == '-' {
			t[c] |= clsID | clsCommand
		}
		if c == ':' {
			t[c] |= clsCommand
		}
		if (c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') && c != 'I' && c != 'L' && c != 'O' && c != 'U' {
			t[c] |= clsULID
		}
		if c >= 0x20 && c < 0x7f {
			t[c] |= clsPrint
		}
	}
	return t
}()

// allIn reports whether every byte of s is in class cls.
func allIn(s string, cls uint8) bool {
	for i := 0; i < len(s); i++ {
		if byteClass[s[i]]&cls == 0 {
			return false
		}
	}
	return true
}

// ValidTenantID reports whether s matches ^[a-z0-9][a-z0-9-]{0,62}$.
func ValidTenantID(s string) bool { return validLowerID(s, MaxTenantIDLen) }

// ValidAPIID reports whether s is a valid API id; same syntax as a tenant id.
func ValidAPIID(s string) bool { return validLowerID(s, MaxAPIIDLen) }

// ValidPolicyID reports whether s is a valid policy id; same syntax as an
// API id ("billing-ro").
func ValidPolicyID(s string) bool { return validLowerID(s, MaxAPIIDLen) }

func validLowerID(s string, max int) bool {
	if len(s) == 0 || len(s) > max || byteClass[s[0]]&clsLower == 0 {
		return false
	}
	for i := 1; i < len(s); i++ {
		if byteClass[s[i]]&clsLower == 0 && s[i] != '-' {
			return false
		}
	}
	return true
}

// ValidUserID reports whether s matches ^[A-Za-z0-9_-]{1,64}$.
func ValidUserID(s string) bool {
	return len(s) > 0 && len(s) <= MaxUserIDLen && allIn(s, clsID)
}

// ValidKeyID reports whether s is a public key id: "key_" followed by a
// canonical (upper-case Crockford base32) ULID.
func ValidKeyID(s string) bool {
	if len(s) != len(KeyIDPrefix)+ulid.EncodedSize || s[:len(KeyIDPrefix)] != KeyIDPrefix {
		return false
	}
	return validULID(s[len(KeyIDPrefix):])
}

// ValidWebhookID reports whether s is a webhook endpoint id: "whk_"
// followed by a canonical ULID.
func ValidWebhookID(s string) bool {
	if len(s) != len(WebhookIDPrefix)+ulid.EncodedSize || s[:len(WebhookIDPrefix)] != WebhookIDPrefix {
		return false
	}
	return validULID(s[len(WebhookIDPrefix):])
}

// ValidEventID reports whether s is a canonical ULID.
func ValidEventID(s string) bool { return len(s) == ulid.EncodedSize && validULID(s) }

// validULID checks the canonical form without allocating: 26 characters of
// upper-case Crockford base32, the first at most '7' (128 bits).
func validULID(s string) bool {
	return len(s) == ulid.EncodedSize && s[0] <= '7' && allIn(s, clsULID)
}

// NewEventID returns a new ULID for an event occurring at t, with randomness
// from crypto/rand.
func NewEventID(t time.Time) (string, error) { return newULID(t, rand.Reader) }

// NewKeyID returns a new public key id created at t.
func NewKeyID(t time.Time) (string, error) {
	id, err := newULID(t, rand.Reader)
	if err != nil {
		return "", err
	}
	return KeyIDPrefix + id, nil
}

func newULID(t time.Time, entropy io.Reader) (string, error) {
	id, err := ulid.New(ulid.Timestamp(t), entropy)
	if err != nil {
		return "", fmt.Errorf("events: new ulid: %w", err)
	}
	return id.String(), nil
}

// validText reports whether s is at most max bytes of valid, printable UTF-8
// with no control characters. Actors, reasons, names and metadata use it so
// that nothing read from the stream can smuggle terminal escapes into logs.
func validText(s string, max int) bool {
	if len(s) > max {
		return false
	}
	if allIn(s, clsPrint) {
		return true
	}
	for _, r := range s {
		if r == 0xFFFD || r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0) {
			return false
		}
	}
	return true
}

// ValidActor reports whether s can name who caused an event.
func ValidActor(s string) bool { return s != "" && validText(s, MaxActorLen) }

// ValidReason reports whether s can be an event's reason (may be empty).
func ValidReason(s string) bool { return validText(s, MaxReasonLen) }

// ValidCommandID reports whether s can be a command id: it becomes part of a
// Nats-Msg-Id header, so it is restricted to [A-Za-z0-9_-:] and 1..128 bytes.
func ValidCommandID(s string) bool {
	return len(s) > 0 && len(s) <= MaxCommandLen && allIn(s, clsCommand)
}
