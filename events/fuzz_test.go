package events

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: no input makes the decoder panic, and whatever it accepts
// re-encodes to something it accepts again with the same meaning.
func FuzzDecode(f *testing.F) {
	for _, b := range goldenSeeds(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"data":{}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(&e)
		if err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
		e2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
		third, err := Encode(&e2)
		if err != nil || !bytes.Equal(again, third) {
			t.Fatalf("encoding is not stable:\n%s\n%s", again, third)
		}
	})
}

// FuzzParseSubject: subjects read off the wire never panic the parser, and
// whatever parses maps back to the same subject.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"keytrail.evt.acme.t", "keytrail.evt.acme.u.bob.u", "keytrail.evt.acme.u.bob.k." + keyID, "keytrail.evt.acme.a.orders", "keytrail.evt..>", "keytrail.evt.a.u.*.k.>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tenant, agg, err := ParseSubject(s)
		if err != nil {
			return
		}
		back, err := Subject(tenant, agg)
		if err != nil || back != s {
			t.Fatalf("ParseSubject(%q) = %q %v; Subject = %q, %v", s, tenant, agg, back, err)
		}
	})
}

// goldenSeeds returns every golden file, the fuzzers' starting corpus.
func goldenSeeds(f *testing.F) [][]byte {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	var seeds [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, bytes.TrimSpace(b))
	}
	return seeds
}
