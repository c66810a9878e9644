package secret

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"strings"
	"testing"
)

func gen(t testing.TB) Secret {
	t.Helper()
	s, err := Generate(DefaultPrefix, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGenerateAndParse(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := gen(t)
		v := s.Reveal()
		if len(v) != len(DefaultPrefix)+RandomLen+ChecksumLen || !strings.HasPrefix(v, DefaultPrefix) {
			t.Fatalf("bad shape %d", len(v))
		}
		if seen[v] {
			t.Fatal("a secret repeated")
		}
		seen[v] = true
		p, err := Parse(v, DefaultPrefix)
		if err != nil || p != s || p.Hash() != s.Hash() || !p.Hash().Equal(s.Hash()) {
			t.Fatalf("Parse(generated) = %v", err)
		}
	}
}

func TestGenerateIsUniformOverTheAlphabet(t *testing.T) {
	counts := map[byte]int{}
	const n = 2000
	for range n {
		v := gen(t).Reveal()
		for i := len(DefaultPrefix); i < len(DefaultPrefix)+RandomLen; i++ {
			counts[v[i]]++
		}
	}
	want := float64(n*RandomLen) / 62
	for _, c := range []byte(alphabet) {
		if got := float64(counts[c]); got < want*0.8 || got > want*1.2 {
			t.Errorf("character %q appears %v times, expected about %v", c, got, want)
		}
	}
}

// TestEveryTypoIsCaught: every single-character substitution and every swap
// of neighbours is refused offline.
func TestEveryTypoIsCaught(t *testing.T) {
	for range 20 {
		v := []byte(gen(t).Reveal())
		for i := len(DefaultPrefix); i < len(v); i++ {
			orig := v[i]
			for _, c := range []byte(alphabet) {
				if c == orig {
					continue
				}
				v[i] = c
				if _, err := Parse(string(v), DefaultPrefix); !errors.Is(err, ErrMalformed) {
					t.Fatalf("substitution at %d accepted", i)
				}
				// The shape alone is fine; the checksum is what catches it.
				if s, err := ParseShape(string(v), DefaultPrefix); err != nil || s.ChecksumOK() {
					t.Fatalf("substitution at %d: shape %v, checksum ok %v", i, err, s.ChecksumOK())
				}
			}
			v[i] = orig
			if i+1 < len(v) && v[i] != v[i+1] {
				v[i], v[i+1] = v[i+1], v[i]
				if _, err := Parse(string(v), DefaultPrefix); !errors.Is(err, ErrMalformed) {
					t.Fatalf("swap at %d accepted", i)
				}
				v[i], v[i+1] = v[i+1], v[i]
			}
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good := gen(t).Reveal()
	for name, in := range map[string]string{
		"empty":          "",
		"other prefix":   "sk_" + good[3:],
		"no prefix":      good[3:],
		"too short":      good[:len(good)-1],
		"too long":       good[:10] + strings.Repeat("a", MaxRandomLen) + good[len(good)-6:],
		"outside base62": good[:10] + "-" + good[11:],
		"non-ascii":      good[:10] + "é" + good[12:],
		"space":          good + " ",
		"bad checksum":   good[:len(good)-6] + "000000",
	} {
		_, err := Parse(in, DefaultPrefix)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
		if err != nil && len(in) > 8 && strings.Contains(err.Error(), in[3:]) {
			t.Errorf("%s: the error echoes the input", name)
		}
	}
}

func TestPrefixes(t *testing.T) {
	for p, ok := range map[string]bool{"kt_": true, "acme2_": true, "k_": true, "_": false, "KT_": false, "kt": false, "1kt_": false, "k-t_": false, "abcdefghijklmnop_": false} {
		if ValidPrefix(p) != ok {
			t.Errorf("ValidPrefix(%q) != %v", p, ok)
		}
	}
	s, err := Generate("acme_", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(s.Reveal(), "acme_"); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(s.Reveal(), DefaultPrefix); !errors.Is(err, ErrMalformed) {
		t.Fatal("a secret of another prefix parsed")
	}
	if _, err := Generate("BAD", rand.Reader); err == nil {
		t.Fatal("Generate accepted a bad prefix")
	}
	if _, err := Generate(DefaultPrefix, bytes.NewReader(nil)); err == nil {
		t.Fatal("Generate succeeded without randomness")
	}
}

// TestSecretNeverPrints: fmt, slog and encoders all see the redacted hint.
func TestSecretNeverPrints(t *testing.T) {
	s := gen(t)
	raw := s.Reveal()
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("issued", "secret", s, "struct", struct{ S Secret }{s})
	j, _ := json.Marshal(map[string]any{"s": s, "p": &s})
	outs := []string{fmt.Sprint(s), fmt.Sprintf("%s %v %+v %#v %q %x %d", s, s, s, s, s, s, s), fmt.Sprintf("%v", struct{ S Secret }{s}),
		fmt.Sprintf("%+v", &s), logs.String(), string(j)}
	for _, out := range outs {
		if strings.Contains(out, raw) || strings.Contains(out, raw[3:20]) {
			t.Fatalf("the secret leaked: %s", out)
		}
		if !strings.Contains(out, "redacted") {
			t.Fatalf("no redaction marker in %q", out)
		}
	}
	if h := s.Hint(); !strings.HasPrefix(h, "kt_…") || !strings.HasSuffix(raw, h[len("kt_…"):]) {
		t.Fatalf("hint %q", h)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(gen(f).Reveal())
	f.Add("kt_")
	f.Add("kt_" + strings.Repeat("0", 36))
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in, DefaultPrefix)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if s.Reveal() != in || s.Hint() == "" {
			t.Fatal("a parsed secret changed")
		}
		again, err := Parse(s.Reveal(), DefaultPrefix)
		if err != nil || again != s {
			t.Fatal("parse is not stable")
		}
	})
}

func BenchmarkParseAndHash(b *testing.B) {
	v := gen(b).Reveal()
	b.ReportAllocs()
	for b.Loop() {
		s, err := Parse(v, DefaultPrefix)
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Hash()
	}
}

func TestChecksumIsCRC32(t *testing.T) {
	v := gen(t).Reveal()
	body := v[:len(v)-ChecksumLen]
	sum := uint64(crc32.ChecksumIEEE([]byte(body)))
	var want [ChecksumLen]byte
	for i := ChecksumLen - 1; i >= 0; i-- {
		want[i] = alphabet[sum%62]
		sum /= 62
	}
	if got := checksum(body); got != want || string(want[:]) != v[len(v)-ChecksumLen:] {
		t.Fatalf("checksum %s, CRC32 says %s", got[:], want[:])
	}
}

func TestParseAndHashDoNotAllocate(t *testing.T) {
	v := gen(t).Reveal()
	if n := testing.AllocsPerRun(100, func() {
		s, _ := Parse(v, DefaultPrefix)
		_ = s.Hash()
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func TestHashEqual(t *testing.T) {
	a := gen(t).Hash()
	if !a.Equal(a) {
		t.Fatal("a hash differs from itself")
	}
	for i := range 32 {
		for _, bit := range []byte{1, 0x80} {
			b := a
			b[i] ^= bit
			if a.Equal(b) || b.Equal(a) {
				t.Fatalf("hashes differing in byte %d compare equal", i)
			}
		}
	}
}
