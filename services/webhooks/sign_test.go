package webhooks

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSignatureMatchesTheSpecification: the Standard Webhooks test vector.
func TestSignatureMatchesTheSpecification(t *testing.T) {
	s, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

// TestVerifyAcceptsEitherSecretOfARotation and refuses what a receiver
// must refuse.
func TestVerifyAcceptsEitherSecretOfARotation(t *testing.T) {
	old, _ := NewSecret()
	cur, _ := NewSecret()
	other, _ := NewSecret()
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"type":"key.expiring"}`)
	h := http.Header{}
	Headers(h, "ntc_1", now, body, old, cur)
	for _, s := range []Secret{old, cur} {
		if err := s.Verify(h, body, now.Add(time.Minute)); err != nil {
			t.Fatalf("%v", err)
		}
	}
	if err := other.Verify(h, body, now); err == nil {
		t.Fatal("another secret verified")
	}
	if err := cur.Verify(h, []byte(`{"type":"key.expired"}`), now); err == nil {
		t.Fatal("another body verified")
	}
	if err := cur.Verify(h, body, now.Add(Tolerance+time.Second)); err == nil {
		t.Fatal("a stale delivery verified")
	}
	if s := cur.String(); strings.Contains(s, cur.Reveal()[len(SecretPrefix):]) {
		t.Fatalf("String shows the secret: %s", s)
	}
	back, err := ParseSecret(cur.Reveal())
	if err != nil || back.Sign("x", now, body) != cur.Sign("x", now, body) {
		t.Fatalf("a revealed secret does not parse back: %v", err)
	}
	for _, bad := range []string{"", "whsec_", "whsec_!!!!", "whsec_" + strings.Repeat("A", 8)} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
