package events

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

// TestSealRoundTrip: a signed event decodes to the same event, its seal
// verifies with the signer's key only, for its subject only; any change
// to the signed bytes breaks it; an unsigned event has no seal.
func TestSealRoundTrip(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	e := sample(KeyRevoked)
	enc, err := Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := SubjectOf(&e)
	stored, err := Sign(subject, enc, key)
	if err != nil || len(stored) != len(enc)+SealLen {
		t.Fatalf("sign: %v, %d bytes for %d", err, len(stored), len(enc))
	}
	unsigned, seal, err := Unseal(subject, stored)
	if err != nil || seal == nil || !bytes.Equal(unsigned, enc) {
		t.Fatalf("unseal: %v %v\n%s\n%s", err, seal, unsigned, enc)
	}
	if !seal.Verify(key.Public().(ed25519.PublicKey)) || seal.Verify(other.Public().(ed25519.PublicKey)) {
		t.Fatal("the seal verifies with the wrong key, or not with its own")
	}
	if _, s2, _ := Unseal(subject+"x", stored); s2.Verify(key.Public().(ed25519.PublicKey)) {
		t.Fatal("the seal verifies for another subject")
	}
	tampered := bytes.Replace(stored, []byte(`"actor":"key_`), []byte(`"actor":"kez_`), 1)
	if _, s3, _ := Unseal(subject, tampered); s3.Verify(key.Public().(ed25519.PublicKey)) {
		t.Fatal("the seal verifies over changed bytes")
	}
	if u, s4, err := Unseal(subject, enc); err != nil || s4 != nil || !bytes.Equal(u, enc) {
		t.Fatal("an unsigned event is not left as it is")
	}
	bad := append([]byte(nil), stored...)
	copy(bad[len(bad)-SealLen+len(sealHead):], "zz")
	if _, _, err := Unseal(subject, bad); err == nil {
		t.Fatal("a malformed signer id unsealed")
	}
	// A signature text that is not base64 of 64 bytes is malformed, as
	// readers and the checkpoints they take the word of always judged it:
	// not an event, never a signature that merely does not verify.
	for _, sig := range []string{strings.Repeat("!", 88), strings.Repeat("A", 87) + "=", strings.Repeat("A", 88),
		strings.Repeat("A", 84) + "A===", strings.Repeat("A", 85) + "\n==", strings.Repeat("A", 85) + "-=="} {
		odd := append([]byte(nil), stored...)
		copy(odd[len(odd)-90:], sig)
		if _, s, err := Unseal(subject, odd); err == nil {
			t.Fatalf("signature %q unsealed: %v", sig, s)
		}
	}
	// Well formed but not the key's: unsealed, and does not verify.
	odd := append([]byte(nil), stored...)
	copy(odd[len(odd)-90:], strings.Repeat("A", 86)+"==")
	if _, s, err := Unseal(subject, odd); err != nil || s.Verify(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("a well-formed signature of nothing: %v, or it verifies", err)
	}
}

// FuzzUnseal: any stored bytes unseal to an error, nothing, or a seal whose
// unsigned event is the bytes before it.
func FuzzUnseal(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	e := sample(KeyRevoked)
	enc, _ := Encode(&e)
	stored, _ := Sign("keytrail.evt.acme.u.alice_01.k."+keyID, enc, key)
	f.Add(stored)
	f.Add(enc)
	f.Add([]byte(`,"signer":"0123456789abcdef","sig":"`))
	for _, bad := range []string{"!", "=", "\n", "-"} {
		odd := bytes.Clone(stored)
		odd[len(odd)-20] = bad[0]
		f.Add(odd)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u, s, err := Unseal("s", data)
		if err == nil && s != nil && (len(u) != len(data)-SealLen || !bytes.Equal(u[:len(u)-1], data[:len(u)-1])) {
			t.Fatalf("unsealed %q from %q", u, data)
		}
		// A signature text is accepted exactly when base64 decodes it to
		// 64 bytes.
		if s != nil {
			var sig [66]byte
			if n, derr := base64.StdEncoding.Decode(sig[:], s.sigText()); derr != nil || n != ed25519.SignatureSize {
				t.Fatalf("accepted signature text %q", s.sigText())
			}
		}
		if len(data) > SealLen+2 && bytes.HasPrefix(data[len(data)-SealLen-1:], []byte(sealHead)) && err != nil {
			text := data[len(data)-len(sealTail)-sigB64Len : len(data)-len(sealTail)]
			var sig [66]byte
			n, derr := base64.StdEncoding.Decode(sig[:], text)
			id := data[len(data)-SealLen-1+len(sealHead):][:SignerIDLen]
			rest := data[len(data)-SealLen-1+len(sealHead)+SignerIDLen:]
			if derr == nil && n == ed25519.SignatureSize && validSignerID(id) && bytes.HasPrefix(rest, []byte(sealMiddle)) && bytes.HasSuffix(data, []byte(sealTail)) {
				t.Fatalf("refused signature text %q that base64 decodes", text)
			}
		}
	})
}

// BenchmarkSeal: what signing costs an append, verifying costs a reader,
// and finding the seal costs a reader a checkpoint vouches for (split: a
// subscription then decodes the event where it lies), per event, beside
// the SHA-256 of the event every reader already takes.
func BenchmarkSeal(b *testing.B) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	e := sample(KeyIssued)
	enc, _ := Encode(&e)
	subject, _ := SubjectOf(&e)
	stored, _ := Sign(subject, enc, key)
	b.Run("hash", func(b *testing.B) {
		for b.Loop() {
			HashOf(stored)
		}
	})
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			Sign(subject, enc, key)
		}
	})
	b.Run("split", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, s, err := SplitSeal(subject, stored); err != nil || !s.Signed() {
				b.Fatal("not unsealed")
			}
		}
	})
	b.Run("unseal+verify", func(b *testing.B) {
		for b.Loop() {
			_, s, _ := Unseal(subject, stored)
			if !s.Verify(pub) {
				b.Fatal("does not verify")
			}
		}
	})
}
