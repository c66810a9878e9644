package natsauth_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/services/natsauth"
)

// TestNoRoleMayWeakenTheEventStream: deny wins, and every role's deny list
// holds the event stream's update, delete, purge and message delete; only
// control publishes events or hears commands.
func TestNoRoleMayWeakenTheEventStream(t *testing.T) {
	for _, r := range natsauth.Roles {
		p := natsauth.For(r)
		if len(p.PublishAllow) == 0 || len(p.SubscribeAllow) == 0 {
			t.Fatalf("%s: an empty allow list allows everything", r)
		}
		for _, op := range []string{"UPDATE", "DELETE", "PURGE", "MSG.DELETE"} {
			if subj := "$JS.API.STREAM." + op + "." + events.StreamName; !slices.Contains(p.PublishDeny, subj) {
				t.Errorf("%s may %s", r, subj)
			}
		}
		if want := r == natsauth.Control; slices.Contains(p.PublishAllow, events.AllSubjects) != want ||
			slices.Contains(p.SubscribeAllow, events.CommandSubjects) != want || p.Responses != want {
			t.Errorf("%s: publish events / hear commands / answer: %v", r, !want)
		}
		if !slices.Equal(p.SubscribeAllow[:1], []string{r.InboxPrefix() + ".>"}) {
			t.Errorf("%s subscribes to %v", r, p.SubscribeAllow)
		}
		for _, s := range p.SubscribeAllow {
			if strings.HasPrefix(s, "_INBOX.") && !strings.HasPrefix(s, r.InboxPrefix()+".") {
				t.Errorf("%s may read another role's replies: %s", r, s)
			}
		}
	}
	if p := natsauth.For("nobody"); len(p.PublishAllow) != 0 || !slices.Equal(p.PublishDeny, []string{">"}) {
		t.Fatalf("an unknown role gets %+v", p)
	}
}

// TestSeedFiles: the first start makes 0600 seeds in a 0700 directory; the
// next reads the same identities; a seed others can read is refused.
func TestSeedFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	first, err := natsauth.LoadOrCreateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v", fi.Mode().Perm())
	}
	again, err := natsauth.LoadOrCreateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range natsauth.Roles {
		path := filepath.Join(dir, r.SeedFile())
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v", path, fi.Mode().Perm())
		}
		if pk := first[r].PublicKey(); !strings.HasPrefix(pk, "U") || pk != again[r].PublicKey() {
			t.Fatalf("%s: %q then %q", r, pk, again[r].PublicKey())
		}
	}
	path := filepath.Join(dir, natsauth.Gateway.SeedFile())
	os.Chmod(path, 0o644)
	if _, err := natsauth.ReadSeedFile(natsauth.Gateway, path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a seed readable by others: %v", err)
	}
	if err := first[natsauth.Gateway].Write(filepath.Join(dir, natsauth.Control.SeedFile())); err == nil {
		t.Fatal("a seed file was overwritten")
	}
	if _, err := natsauth.ParseRole("root"); err == nil {
		t.Fatal("a role that does not exist")
	}
}

// FuzzParseIdentity: a seed file is read from disk; nothing in one makes
// the parser panic, and what it accepts is a user identity.
func FuzzParseIdentity(f *testing.F) {
	id, _ := natsauth.NewIdentity(natsauth.Auditor)
	dir := f.TempDir()
	id.Write(filepath.Join(dir, "a.nk"))
	b, _ := os.ReadFile(filepath.Join(dir, "a.nk"))
	f.Add(b)
	f.Add([]byte("-----BEGIN USER NKEY SEED-----\nSUAB\n------END USER NKEY SEED------\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := natsauth.ParseIdentity(natsauth.Auditor, data)
		if err == nil && !strings.HasPrefix(id.PublicKey(), "U") {
			t.Fatalf("accepted a seed that is not a user's: %q", id.PublicKey())
		}
	})
}
