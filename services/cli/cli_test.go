package cli

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/client"
)

// TestTablesShowTimesForPeople: a time in a table is local, to the second,
// with its zone (it was RFC 3339 UTC with nanoseconds); nothing is "-".
func TestTablesShowTimesForPeople(t *testing.T) {
	at := time.Date(2026, 12, 7, 0, 58, 18, 123456789, time.UTC)
	want := at.Local().Format("2006-01-02 15:04:05 MST")
	k := client.Key{ID: "key_1", CreatedAt: at, ExpiresAt: &at}
	got := map[string]string{}
	for _, f := range keyFields(k) {
		got[f.name] = f.value
	}
	if got["created_at"] != want || got["expires_at"] != want || got["not_before"] != "-" || got["id"] != "key_1" {
		t.Fatalf("key fields: %v, want times as %q", got, want)
	}
}

// TestEachRunHasItsOwnFlags: two tables of the same noun keep their flag
// values apart (they were package variables, so a second command in one
// process got the first one's --scope and --expires-at).
func TestEachRunHasItsOwnFlags(t *testing.T) {
	n, _ := NounNamed("key")
	for _, v := range n.Verbs() {
		if len(n.Flags(v)) == 0 || !strings.Contains(strings.Join(n.Flags(v), " "), "--tenant") {
			t.Errorf("key %s: flags %v", v, n.Flags(v))
		}
	}
	a, b := keyVerbs(), keyVerbs()
	fa, fb := flagSet(a["issue"]), flagSet(b["issue"])
	if err := fa.Parse([]string{"--scope", "orders:write", "--expires-at", "2030-01-01T00:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	if s := fb.Lookup("scope").Value.String(); s != "" {
		t.Fatalf("a second table's --scope is %q", s)
	}
	if s := fb.Lookup("expires-at").Value.String(); s != "" {
		t.Fatalf("a second table's --expires-at is %q", s)
	}
}

func flagSet(v verb) *flag.FlagSet {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	v.flags(fs)
	return fs
}

func TestDidYouMean(t *testing.T) {
	for typed, want := range map[string]string{"lst": ` (did you mean "list"?)`, "tenat": ` (did you mean "tenant"?)`, "zzzz": ""} {
		if got := DidYouMean(typed, []string{"list", "tenant", "issue"}); got != want {
			t.Errorf("%s: %q, want %q", typed, got, want)
		}
	}
}

func TestSparkline(t *testing.T) {
	for _, c := range []struct {
		counts []uint64
		width  int
		want   string
	}{
		{[]uint64{0, 1, 8, 4}, 10, " ▁█▄"},
		{[]uint64{0, 0}, 10, "  "},
		{[]uint64{1, 1, 0, 0, 2, 0}, 3, "█ █"}, // runs of two: 2, 0, 2
		{nil, 5, ""},
	} {
		if got := Sparkline(c.counts, c.width); got != c.want {
			t.Errorf("Sparkline(%v, %d) = %q, want %q", c.counts, c.width, got, c.want)
		}
	}
}
