package events

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sync"
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

// Seal is an event's signature: who signed it, and over what.
type Seal struct {
	Signer string
	Sig    [ed25519.SignatureSize]byte
	// digest is what was signed, computed from subject and signed when it
	// is first asked for (a reader that a checkpoint vouches for never
	// does).
	digest  [32]byte
	hashed  bool
	subject string
	signed  []byte
}

// NewSeal is a seal of a digest already computed.
func NewSeal(signer string, sig []byte, digest [32]byte) *Seal {
	s := &Seal{Signer: signer, digest: digest, hashed: true}
	copy(s.Sig[:], sig)
	return s
}

// Digest is what the signature is of.
func (s *Seal) Digest() [32]byte {
	if !s.hashed {
		s.digest, s.hashed = sealDigest(s.subject, s.signed), true
		s.signed = nil
	}
	return s.digest
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
func Unseal(subject string, data []byte) ([]byte, *Seal, error) { return UnsealTo(nil, subject, data) }

// UnsealTo is Unseal appending the event as encoded to dst (a reader's
// buffer, used again for the next message) when it was signed; the seal
// keeps a reference to data.
func UnsealTo(dst []byte, subject string, data []byte) ([]byte, *Seal, error) {
	n := len(data)
	const suffix = SealLen + 1
	if n < suffix+2 || !bytes.HasSuffix(data, []byte(sealTail)) {
		return data, nil, nil
	}
	cut := n - suffix
	tail := data[cut:]
	if !bytes.HasPrefix(tail, []byte(sealHead)) {
		return data, nil, nil
	}
	rest := tail[len(sealHead):]
	id, rest := rest[:SignerIDLen], rest[SignerIDLen:]
	if !bytes.HasPrefix(rest, []byte(sealMiddle)) || !validSignerID(id) {
		return nil, nil, &DecodeError{ErrMalformed, "a malformed signature"}
	}
	rest = rest[len(sealMiddle):]
	seal := &Seal{Signer: internSigner(id), subject: subject, signed: data[:cut:cut]}
	var sig [sigB64Len / 4 * 3]byte
	if m, err := base64.StdEncoding.Decode(sig[:], rest[:sigB64Len]); err != nil || m != ed25519.SignatureSize {
		return nil, nil, &DecodeError{ErrMalformed, "a malformed signature"}
	}
	copy(seal.Sig[:], sig[:])
	dst = append(dst, data[:cut]...)
	return append(dst, '}'), seal, nil
}

// signerIDs interns the signer ids read (a log has a handful): a reader
// does not allocate one per event. Bounded: ids past the first
// maxInterned, as a forger could make up, are not kept.
var signerIDs = struct {
	sync.RWMutex
	m map[string]string
}{m: map[string]string{}}

const maxInterned = 256

func internSigner(id []byte) string {
	signerIDs.RLock()
	s, ok := signerIDs.m[string(id)]
	signerIDs.RUnlock()
	if ok {
		return s
	}
	s = string(id)
	signerIDs.Lock()
	if len(signerIDs.m) < maxInterned {
		signerIDs.m[s] = s
	}
	signerIDs.Unlock()
	return s
}

// Verify reports whether the seal is a signature by pub.
func (s *Seal) Verify(pub ed25519.PublicKey) bool {
	if s == nil || len(pub) != ed25519.PublicKeySize || SignerID(pub) != s.Signer {
		return false
	}
	d := s.Digest()
	return ed25519.Verify(pub, d[:], s.Sig[:])
}
