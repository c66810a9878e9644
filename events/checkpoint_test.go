package events

import (
	"bytes"
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"
)

// TestCheckpointRoundTrip: a checkpoint's text reads back as it was, its
// signature opens with its signer only, and a judgement that is out of
// order or out of its span is refused.
func TestCheckpointRoundTrip(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	for _, cp := range []Checkpoint{
		{Origin: "keytrail/KEYTRAIL_EVENTS/1", Seq: 1024, Chain: Hash{1}},
		{Origin: "keytrail/KEYTRAIL_EVENTS/1", Seq: 2048, Chain: Hash{2}, Judged: true, From: 1024},
		{Origin: "keytrail/KEYTRAIL_EVENTS/1", Seq: 2048, Chain: Hash{2}, Judged: true, From: 1024, Refused: []uint64{1025, 2048}},
	} {
		note, err := SignCheckpoint(key, cp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := OpenCheckpoint(note, map[string]ed25519.PublicKey{SignerID(key.Public().(ed25519.PublicKey)): key.Public().(ed25519.PublicKey)})
		if err != nil || got.Text() != cp.Text() || !slices.Equal(got.Refused, cp.Refused) {
			t.Fatalf("%+v: %+v %v", cp, got, err)
		}
		other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32)).Public().(ed25519.PublicKey)
		if _, err := OpenCheckpoint(note, map[string]ed25519.PublicKey{SignerID(other): other}); err == nil {
			t.Fatal("opened by a stranger's key")
		}
	}
	for _, bad := range []string{
		"o\n10\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\njudged 10\n",    // an empty span
		"o\n10\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\njudged 2 5 4\n", // out of order
		"o\n10\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\njudged 2 11\n",  // past its sequence
		"o\n10\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\njudged 2 2\n",   // at its start
		"o\n10\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nother 2\n",
		"o\n10\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\njudged 1\nmore\n",
		"o\n010\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
	} {
		if _, err := ParseCheckpoint(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzParseCheckpoint: any text parses to an error or to a checkpoint
// whose text reads back the same.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add("keytrail/KEYTRAIL_EVENTS/1\n2048\nAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\njudged 1024 1025 2048\n")
	f.Add("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	f.Fuzz(func(t *testing.T, text string) {
		cp, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		if again, err := ParseCheckpoint(cp.Text()); err != nil || again.Text() != cp.Text() {
			t.Fatalf("%q: %q %v", text, cp.Text(), err)
		}
		if strings.Count(cp.Text(), "\n") < 3 {
			t.Fatalf("%q", cp.Text())
		}
	})
}
