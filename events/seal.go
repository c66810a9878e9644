package events

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
)

// Signed events (docs/signing.md). A stored event may end with two members,
// written last so that what is signed is the stored bytes before them:
//
//	…,"signer":"<16 hex>","sig":"<base64 Ed25519 signature>"}
//
// The signature is over SHA-256("keytrail/event/v1\n" || subject || "\n" ||
// the stored bytes up to the signer member): it binds the event to its
// subject, and through prev_hash to its place in its aggregate's chain.
// The chain's hash (HashOf) is over all the stored bytes, signature
// included.
const (
	// SignerIDLen is the length of a signer's id: 8 bytes of the SHA-256
	// of its public key, in hex.
	SignerIDLen = 16
	sigB64Len   = 88 // base64 of 64 bytes, padded
	sealHead    = `,"signer":"`
	sealMiddle  = `","sig":"`
	sealTail    = `"}`
	// SealLen is what a signature adds to an encoded event.
	SealLen = len(sealHead) + SignerIDLen + len(sealMiddle) + sigB64Len + len(sealTail) - 1
)

// Seal is an event's signature: who signed it, and over what; the zero
// Seal is an unsigned event's. It refers to the stored bytes it was read
// from; the signature is decoded and the digest computed only when it is
// verified (a reader that a checkpoint vouches for never does: unsealing
// costs it a split, and nothing is allocated).
type Seal struct {
	Signer  string
	subject string
	stored  []byte // the stored event, its seal members last
}

// Signed reports whether the event has a signature.
func (s *Seal) Signed() bool { return s != nil && s.stored != nil }

// signed is the stored bytes before the signer member; sigText the
// signature member's base64 text.
func (s *Seal) signed() []byte { return s.stored[:len(s.stored)-SealLen-1] }
func (s *Seal) sigText() []byte {
	return s.stored[len(s.stored)-len(sealTail)-sigB64Len : len(s.stored)-len(sealTail)]
}

// SignerID names a signing key: the first 8 bytes of the SHA-256 of its
// public key, in hex.
func SignerID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// ValidSignerID reports whether s can name a signer.
func ValidSignerID(s string) bool { return validSignerID([]byte(s)) }

func validSignerID(s []byte) bool {
	if len(s) != SignerIDLen {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func sealDigest(subject string, signed []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("keytrail/event/v1\n"))
	h.Write([]byte(subject))
	h.Write([]byte("\n"))
	h.Write(signed)
	return [32]byte(h.Sum(nil))
}

// Sign seals an encoded event for subject with key: the bytes to store.
func Sign(subject string, encoded []byte, key ed25519.PrivateKey) ([]byte, error) {
	if len(encoded) < 2 || encoded[len(encoded)-1] != '}' {
		return nil, fmt.Errorf("events: sign: not an encoded event")
	}
	if len(encoded)+SealLen > MaxEventSize {
		return nil, fmt.Errorf("events: sign: %w (%d bytes with its signature)", ErrTooLarge, len(encoded)+SealLen)
	}
	signed := encoded[:len(encoded)-1]
	d := sealDigest(subject, signed)
	sig := ed25519.Sign(key, d[:])
	out := make([]byte, 0, len(encoded)+SealLen)
	out = append(out, signed...)
	out = append(out, sealHead...)
	out = append(out, SignerID(key.Public().(ed25519.PublicKey))...)
	out = append(out, sealMiddle...)
	out = base64.StdEncoding.AppendEncode(out, sig)
	return append(out, sealTail...), nil
}

// Unseal splits a stored event into the event as encoded (without its
// signature) and its seal; a message that ends without one is returned as
// it is, with a nil seal. A signature that is there but malformed is an
// error.
func Unseal(subject string, data []byte) ([]byte, *Seal, error) {
	cut, seal, err := SplitSeal(subject, data)
	if err != nil {
		return nil, nil, err
	}
	if !seal.Signed() {
		return data, nil, nil
	}
	return append(data[:cut:cut], '}'), &seal, nil
}

// SplitSeal finds the seal of a stored event without copying anything:
// the event as encoded is data[:cut] followed by a closing brace (data[cut]
// is the comma before the signer member). cut is len(data) and the seal
// the zero Seal when the event is not signed. The seal keeps a reference to
// data.
func SplitSeal(subject string, data []byte) (cut int, seal Seal, err error) {
	n := len(data)
	const suffix = SealLen + 1
	if n < suffix+2 || !bytes.HasSuffix(data, []byte(sealTail)) {
		return n, Seal{}, nil
	}
	cut = n - suffix
	tail := data[cut:]
	if !bytes.HasPrefix(tail, []byte(sealHead)) {
		return n, Seal{}, nil
	}
	rest := tail[len(sealHead):]
	id, rest := rest[:SignerIDLen], rest[SignerIDLen:]
	if !bytes.HasPrefix(rest, []byte(sealMiddle)) || !validSignerID(id) || !validSigText(rest[len(sealMiddle):len(rest)-len(sealTail)]) {
		return n, Seal{}, &DecodeError{ErrMalformed, "a malformed signature"}
	}
	return cut, Seal{Signer: internSigner(id), subject: subject, stored: data[:n:n]}, nil
}

// validSigText reports whether text is what base64.StdEncoding decodes to
// exactly a signature's 64 bytes — 86 characters of its alphabet and "==" —
// without decoding it. A stored event whose signature member is anything
// else is not an event, as it never was: checkpoints judged that way, and a
// reader taking their word must too.
func validSigText(text []byte) bool {
	if len(text) != sigB64Len || text[sigB64Len-2] != '=' || text[sigB64Len-1] != '=' {
		return false
	}
	var bad byte // no branch per character
	for _, c := range text[:sigB64Len-2] {
		bad |= notBase64[c]
	}
	return bad == 0
}

// notBase64 is 1 for a byte outside base64.StdEncoding's alphabet.
var notBase64 = func() (t [256]byte) {
	for i := range t {
		t[i] = 1
	}
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") {
		t[c] = 0
	}
	return t
}()

// signerIDs interns the signer ids read (a log has a handful): a reader
// does not allocate one per event, nor take a lock (the map is replaced,
// never changed). Bounded: ids past the first maxInterned, as a forger
// could make up, are not kept.
var signerIDs struct {
	sync.Mutex // held by writers
	m          atomic.Pointer[map[string]string]
}

const maxInterned = 256

func internSigner(id []byte) string {
	if m := signerIDs.m.Load(); m != nil {
		if s, ok := (*m)[string(id)]; ok {
			return s
		}
	}
	s := string(id)
	signerIDs.Lock()
	defer signerIDs.Unlock()
	old := signerIDs.m.Load()
	if old != nil && len(*old) >= maxInterned {
		return s
	}
	m := make(map[string]string, 1)
	if old != nil {
		m = maps.Clone(*old)
	}
	m[s] = s
	signerIDs.m.Store(&m)
	return s
}

// Verify reports whether the seal is a signature by pub.
func (s *Seal) Verify(pub ed25519.PublicKey) bool {
	if !s.Signed() || len(pub) != ed25519.PublicKeySize || SignerID(pub) != s.Signer {
		return false
	}
	var sig [sigB64Len / 4 * 3]byte
	if n, err := base64.StdEncoding.Decode(sig[:], s.sigText()); err != nil || n != ed25519.SignatureSize {
		return false
	}
	d := sealDigest(s.subject, s.signed())
	return ed25519.Verify(pub, d[:], sig[:ed25519.SignatureSize])
}
