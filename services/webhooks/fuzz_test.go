package webhooks

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// FuzzVerify: a receiver's check of any headers and body never panics, and
// accepts only what the secret signed.
func FuzzVerify(f *testing.F) {
	s, _ := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	now := time.Unix(1614265330, 0)
	f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"test": 2432232314}`))
	f.Add("", "x", "v1, v1,", []byte{})
	f.Add("a", "-99999999999999999999", "v1a,xyz v1,", []byte{0xff})
	f.Fuzz(func(t *testing.T, id, ts, sigs string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sigs)
		if s.Verify(h, body, now) == nil {
			want := http.Header{}
			Headers(want, id, time.Unix(parseUnix(ts), 0), body, s)
			if !bytes.Contains([]byte(sigs), []byte(want.Get(HeaderSignature))) {
				t.Fatalf("accepted %q without the signature %q", sigs, want.Get(HeaderSignature))
			}
		}
	})
}

func parseUnix(ts string) int64 {
	var n int64
	for _, c := range ts {
		n = n*10 + int64(c-'0')
	}
	return n
}

// FuzzOpenSealed: whatever the secrets bucket holds, opening it never
// panics, and only what was sealed for the place opens.
func FuzzOpenSealed(f *testing.F) {
	k, err := newKEK(bytes.Repeat([]byte{7}, kekLen))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := k.seal([]byte("0123456789abcdef0123456789abcdef"), "ad")
	f.Add(good, "ad")
	f.Add(good[:10], "ad")
	f.Add([]byte("KTWS1"), "")
	f.Fuzz(func(t *testing.T, sealed []byte, ad string) {
		plain, err := k.open(sealed, ad)
		// (The seed was sealed with a random nonce in another process: what
		// opens must be that plaintext, for that place — only a GCM forgery
		// could open anything else.)
		if err == nil && (ad != "ad" || string(plain) != "0123456789abcdef0123456789abcdef") {
			t.Fatalf("opened %q for %q", plain, ad)
		}
	})
}

// FuzzParseSecret: any string a user pastes is a secret or an error.
func FuzzParseSecret(f *testing.F) {
	f.Add("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	f.Add("whsec_")
	f.Add("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw==")
	f.Fuzz(func(t *testing.T, s string) {
		if sec, err := ParseSecret(s); err == nil && (len(sec.Bytes()) < 24 || len(sec.Bytes()) > 64) {
			t.Fatalf("%q parsed to %d bytes", s, len(sec.Bytes()))
		}
	})
}
