// Package webhooks delivers Keytrail's notices to tenants' HTTP endpoints
// the Standard Webhooks way (https://www.standardwebhooks.com, v1): each
// request carries webhook-id, webhook-timestamp and webhook-signature, the
// signature an HMAC-SHA256 of "id.timestamp.body" under the endpoint's
// secret (whsec_ + base64), so that a receiver can check both who sent it
// and that it is fresh.
package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// secretBytes is the length of a new signing secret's key (the
// specification asks for 24 to 64).
const secretBytes = 32

// Secret is an endpoint's signing key. It is never printed: String hides
// it; Reveal gives the whsec_ form once, to whoever created the endpoint.
type Secret struct{ key []byte }

// NewSecret makes a random signing secret.
func NewSecret() (Secret, error) {
	k := make([]byte, secretBytes)
	if _, err := rand.Read(k); err != nil {
		return Secret{}, err
	}
	return Secret{key: k}, nil
}

// ParseSecret reads a whsec_ secret (the prefix is optional, as receivers'
// libraries take it).
func ParseSecret(s string) (Secret, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
	if err != nil || len(k) < 24 || len(k) > 64 {
		return Secret{}, errors.New("webhooks: a signing secret is whsec_ and 24 to 64 bytes in base64")
	}
	return Secret{key: k}, nil
}

// Reveal is the secret in the whsec_ form.
func (s Secret) Reveal() string { return SecretPrefix + base64.StdEncoding.EncodeToString(s.key) }

// Bytes is the raw key, for encryption at rest.
func (s Secret) Bytes() []byte { return s.key }

// String never shows the secret.
func (s Secret) String() string { return SecretPrefix + "…" }

// Sign is the v1 signature of a message: "v1," and the base64 HMAC-SHA256
// of "id.timestamp.body".
func (s Secret) Sign(id string, at time.Time, body []byte) string {
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "%s.%d.", id, at.Unix())
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Headers sets the three headers of a delivery signed with every secret
// given (during a rotation, the old and the new: a receiver accepts either).
func Headers(h http.Header, id string, at time.Time, body []byte, secrets ...Secret) {
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = s.Sign(id, at, body)
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(sigs, " "))
}

// Tolerance is how far a delivery's timestamp may be from the receiver's
// clock.
const Tolerance = 5 * time.Minute

// ErrSignature: the request is not signed by the secret, or is stale.
var ErrSignature = errors.New("webhooks: signature does not verify")

// Verify checks a delivery as a receiver does: the headers are there, the
// timestamp within Tolerance of now, and one of the v1 signatures the
// HMAC of the body (compared in constant time).
func (s Secret) Verify(h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("%w: a header is missing", ErrSignature)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp", ErrSignature)
	}
	at := time.Unix(unix, 0)
	if d := now.Sub(at); d > Tolerance || d < -Tolerance {
		return fmt.Errorf("%w: timestamp %s is too far from now", ErrSignature, at.UTC().Format(time.RFC3339))
	}
	want := []byte(s.Sign(id, at, body))
	for _, sig := range strings.Fields(sigs) {
		if hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return ErrSignature
}
