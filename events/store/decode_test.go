package store

import (
	"bytes"
	"crypto/ed25519"
	"reflect"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
)

// signedEvent is a key.revoked event as a signing control node stores it.
func signedEvent(t testing.TB) (subject string, stored []byte, pub ed25519.PublicKey) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	e := events.Event{ID: "01JDQ8Z6W4M2N9V3X5C7B1A0ZZ", Type: events.KeyRevoked, Version: 1, Tenant: "acme",
		Aggregate: events.KeyAggregate("bob", "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY"), Actor: "root",
		OccurredAt: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC), CommandID: "cmd-1",
		PrevHash: events.Hash{1}, Data: events.KeyRevokedV1{}}
	enc, err := events.Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ = events.SubjectOf(&e)
	stored, err = events.Sign(subject, enc, key)
	if err != nil {
		t.Fatal(err)
	}
	return subject, stored, key.Public().(ed25519.PublicKey)
}

// TestDecodingInPlaceLeavesTheStoredBytes: a subscription decodes a signed
// event where it lies (its seal's comma briefly the closing brace); the
// stored bytes are as they were after, the event, its hash and its seal the
// same as decoding a copy gives, and the seal verifies.
func TestDecodingInPlaceLeavesTheStoredBytes(t *testing.T) {
	subject, stored, pub := signedEvent(t)
	kept := bytes.Clone(stored)
	copied, err := decodeStored(7, subject, kept, false)
	if err != nil || !bytes.Equal(kept, stored) {
		t.Fatalf("copying: %v", err)
	}
	owned := bytes.Clone(stored)
	inPlace, err := decodeStored(7, subject, owned, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(owned, stored) {
		t.Fatalf("the stored bytes changed:\n%s\n%s", owned, stored)
	}
	if inPlace.Hash != events.HashOf(stored) || !inPlace.Seal.Verify(pub) || !reflect.DeepEqual(inPlace.Event, copied.Event) {
		t.Fatalf("in place: %+v\ncopied: %+v", inPlace, copied)
	}
	// Broken in place, refused as a copy is, and still left as stored.
	bad := bytes.Replace(bytes.Clone(stored), []byte(`"actor":"root"`), []byte(`"actor":"ro\x01t"`), 1)
	was := bytes.Clone(bad)
	if _, err := decodeStored(7, subject, bad, true); err == nil || !bytes.Equal(bad, was) {
		t.Fatalf("a malformed signed event: %v, bytes changed: %v", err, !bytes.Equal(bad, was))
	}
}

// FuzzDecodeStored: any stored bytes decode in place exactly as they do
// from a copy, and are left as they were.
func FuzzDecodeStored(f *testing.F) {
	subject, stored, _ := signedEvent(f)
	f.Add(stored)
	f.Add(stored[:len(stored)-events.SealLen])
	f.Add([]byte(`{},"signer":"0123456789abcdef","sig":"` + string(bytes.Repeat([]byte{'A'}, 86)) + `=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		was := bytes.Clone(data)
		copied, cerr := decodeStored(1, subject, bytes.Clone(data), false)
		inPlace, ierr := decodeStored(1, subject, data, true)
		if !bytes.Equal(data, was) {
			t.Fatalf("the stored bytes changed: %q", was)
		}
		if (cerr == nil) != (ierr == nil) || (cerr == nil && (inPlace.Hash != copied.Hash || !reflect.DeepEqual(inPlace.Event, copied.Event))) {
			t.Fatalf("in place %v, copied %v", ierr, cerr)
		}
	})
}
