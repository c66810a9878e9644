package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/services/app"

	"github.com/keytrail/keytrail/internal/testkit"
)

// TestCLIDrivesTheAdminAPI runs the CLI in-process against a keytrail dev:
// the token comes from <data>/root.key, KEYTRAIL_TOKEN or --token, tables
// for people and -o json for machines.
func TestCLIDrivesTheAdminAPI(t *testing.T) {
	e := startAdmin(t)
	env := map[string]string{}
	run := func(args ...string) (string, int) {
		t.Helper()
		var out, errb bytes.Buffer
		code := app.MainEnv(testCtx(t, 30*time.Second), args, &out, &errb, func(k string) string { return env[k] })
		return out.String() + errb.String(), code
	}
	ok := func(args ...string) string {
		t.Helper()
		out, code := run(args...)
		if code != 0 {
			t.Fatalf("keytrail %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}
	data := []string{"--data", e.dir}
	out := ok(append([]string{"tenant", "create", "acme", "--name", "Acme"}, data...)...)
	if !strings.Contains(out, "status:") || !strings.Contains(out, "active") {
		t.Fatalf("table output: %s", out)
	}
	ok(append([]string{"user", "create", "--tenant", "acme", "bob", "--name", "Bob"}, data...)...)
	out = ok(append([]string{"key", "issue", "--tenant", "acme", "--user", "bob", "--scope", "orders:read", "--scope", "keytrail:admin",
		"--ttl", "24h", "--rate", "5/10", "--meta", "team=a", "-o", "json"}, data...)...)
	var issued struct {
		Key    struct{ ID string }
		Secret string
		Seq    uint64
	}
	if err := json.Unmarshal([]byte(out), &issued); err != nil || !strings.HasPrefix(issued.Secret, "kt_") {
		t.Fatalf("json output: %v %s", err, out)
	}
	// The new admin key works through KEYTRAIL_TOKEN, confined to acme.
	env["KEYTRAIL_TOKEN"] = issued.Secret
	server := []string{"--server", e.base}
	seen := fmt.Sprint(issued.Seq) // the key may be a moment old: say what we saw
	out = ok(append([]string{"key", "list", "--tenant", "acme", "--min-seq", seen}, server...)...)
	if !strings.Contains(out, issued.Key.ID) || !strings.Contains(out, "HINT") {
		t.Fatalf("list: %s", out)
	}
	ok(append([]string{"key", "update", "--tenant", "acme", issued.Key.ID, "--name", "ci"}, server...)...)
	if out, code := run(append([]string{"tenant", "get", "acme", "--min-seq", "999999999"}, server...)...); code == 0 || !strings.Contains(out, "unavailable") {
		t.Fatalf("a future min-seq: exit %d %s", code, out)
	}
	// Back to the root key from the data directory: the admin key is about
	// to be suspended.
	delete(env, "KEYTRAIL_TOKEN")
	ok(append([]string{"key", "suspend", "--tenant", "acme", issued.Key.ID, "--reason", "check"}, data...)...)
	ok(append([]string{"key", "resume", "--tenant", "acme", issued.Key.ID}, data...)...)
	out = ok(append([]string{"key", "rotate", "--tenant", "acme", issued.Key.ID, "--grace", "1h"}, data...)...)
	if !strings.Contains(out, "[previous]") || !strings.Contains(out, "kt_") {
		t.Fatalf("rotate: %s", out)
	}
	ok(append([]string{"api", "create", "--tenant", "acme", "orders", "--prefix", "/orders", "--upstream", "http://127.0.0.1:9001"}, data...)...)
	ok(append([]string{"api", "update", "--tenant", "acme", "orders", "--scope", "orders:read"}, data...)...)
	ok(append([]string{"api", "deprecate", "--tenant", "acme", "orders", "--sunset", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, data...)...)
	ok(append([]string{"api", "retire", "--tenant", "acme", "orders"}, data...)...)
	ok(append([]string{"user", "disable", "--tenant", "acme", "bob"}, data...)...)
	ok(append([]string{"user", "revoke-keys", "--tenant", "acme", "bob"}, data...)...)
	ok(append([]string{"user", "delete", "--tenant", "acme", "bob"}, data...)...)
	out = ok(append([]string{"tenant", "revoke-keys", "acme", "--reason", "incident"}, data...)...)
	if !strings.Contains(out, "keys_revoked_before") {
		t.Fatalf("tenant revoke-keys: %s", out)
	}
	ok(append([]string{"tenant", "suspend", "acme", "--reason", "billing"}, data...)...)

	// Errors: usage (2) and problems (1), with the problem's code.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"key", "list"}, 2, "--tenant is required"},
		{[]string{"key", "issue", "--tenant", "acme", "--data", e.dir}, 2, "--user"},
		{[]string{"key", "explode", "--tenant", "acme"}, 2, "usage"},
		{[]string{"key", "lst", "--tenant", "acme"}, 2, `unknown command "lst" for keytrail key (did you mean "list"?)`},
		{[]string{"tenat", "list"}, 2, `unknown command "tenat" (did you mean "tenant"?)`},
		{[]string{"tenant", "create", "Bad.Id", "--name", "Bad", "--data", e.dir}, 1, "invalid_argument"},
		{[]string{"tenant", "get", "nope", "--data", e.dir}, 1, "not_found"},
		{[]string{"tenant", "get", "acme", "--server", e.base, "--token", "kt_wrong"}, 1, "unauthenticated"},
		{[]string{"key", "issue", "--tenant", "acme", "--user", "bob", "--rate", "fast", "--data", e.dir}, 2, "--rate"},
		{[]string{"key", "get", "--tenant", "acme", "key_01JDQ8Z6W4M2N9V3X5C7B1D2E3", "--min-seq", "soon", "--data", e.dir}, 2, "--min-seq"},
	} {
		out, code := run(c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("keytrail %s: exit %d %q, want %d and %q", strings.Join(c.args, " "), code, out, c.code, c.want)
		}
	}
}

func TestCLIVerify(t *testing.T) {
	e := startAdmin(t)
	issued := e.givenKey("orders:read")
	sec := fmt.Sprint(field(issued, "secret"))
	run := func(env map[string]string, args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := app.MainEnv(testCtx(t, 30*time.Second), args, &out, &errb, func(k string) string { return env[k] })
		return out.String() + errb.String(), code
	}
	seq := issued.header.Get("Keytrail-Seq")
	if out, code := run(nil, "verify", sec, "--scope", "orders:read", "--data", e.dir, "--min-seq", seq); code != 0 || !strings.HasPrefix(out, "VALID") {
		t.Fatalf("valid: %d %s", code, out)
	}
	if out, code := run(map[string]string{"KEYTRAIL_VERIFY_KEY": sec}, "verify", "--scope", "billing", "--data", e.dir); code != app.ExitNotValid ||
		!strings.HasPrefix(out, "INSUFFICIENT_SCOPE") || !strings.Contains(out, "key.issued at seq") {
		t.Fatalf("insufficient scope: %d %s", code, out)
	}
	// MALFORMED says which check failed (it did not).
	if out, code := run(nil, "verify", "kt_typo", "--data", e.dir); code != app.ExitNotValid || !strings.HasPrefix(out, "MALFORMED: wrong length") {
		t.Fatalf("malformed: %d %s", code, out)
	}
}

// TestCommandsKeepNothingBetweenRuns: two commands in one process — the
// first with --scope, --expires-at and --not-before, the second with none
// — and the second key, as the API returns it, has none of the first's
// (it had the first's --expires-at and --not-before: the subcommands' flag
// storage lived in package variables, made once per process).
func TestCommandsKeepNothingBetweenRuns(t *testing.T) {
	e := startAdmin(t)
	run := func(args ...string) string { t.Helper(); return mustKeytrail(t, e.dir, append(args, "-o", "json")...) }
	run("tenant", "create", "acme", "--name", "Acme")
	run("user", "create", "--tenant", "acme", "bob")
	expires := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	notBefore := time.Now().Add(-time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	run("key", "issue", "--tenant", "acme", "--user", "bob", "--scope", "orders:write", "--expires-at", expires, "--not-before", notBefore)
	var second struct {
		Key struct{ ID string }
	}
	if err := json.Unmarshal([]byte(run("key", "issue", "--tenant", "acme", "--user", "bob")), &second); err != nil {
		t.Fatal(err)
	}
	var shown struct {
		Key struct {
			ID        string     `json:"id"`
			Scopes    []string   `json:"scopes"`
			ExpiresAt *time.Time `json:"expires_at"`
			NotBefore *time.Time `json:"not_before"`
		} `json:"key"`
	}
	if err := json.Unmarshal([]byte(run("key", "get", "--tenant", "acme", second.Key.ID)), &shown); err != nil || shown.Key.ID != second.Key.ID {
		t.Fatalf("%v: %+v", err, shown)
	}
	got := shown.Key
	if len(got.Scopes) != 0 || got.ExpiresAt != nil || got.NotBefore != nil {
		t.Fatalf("the second key inherited the first's flags: scopes %v, expires %v, not before %v", got.Scopes, got.ExpiresAt, got.NotBefore)
	}
}

// TestDurationsAcceptDays: --ttl 30d issues a key that expires in 30 days
// (it failed with Go's "unknown unit" error); a duration nobody can read is
// refused by the API with the field named.
func TestDurationsAcceptDays(t *testing.T) {
	e := startAdmin(t)
	run := func(args ...string) (string, int) { return keytrail(t, e.dir, append(args, "-o", "json")...) }
	for _, args := range [][]string{{"tenant", "create", "acme", "--name", "Acme"}, {"user", "create", "--tenant", "acme", "bob"}} {
		if out, code := run(args...); code != 0 {
			t.Fatalf("%v: %d %s", args, code, out)
		}
	}
	out, code := run("key", "issue", "--tenant", "acme", "--user", "bob", "--ttl", "30d")
	var issued struct {
		Key struct {
			ExpiresAt *time.Time `json:"expires_at"`
		} `json:"key"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &issued) != nil || issued.Key.ExpiresAt == nil {
		t.Fatalf("--ttl 30d: exit %d %s", code, out)
	}
	if d := time.Until(*issued.Key.ExpiresAt); d < 29*24*time.Hour || d > 30*24*time.Hour+time.Minute {
		t.Fatalf("--ttl 30d expires in %s", d)
	}
	if out, code := run("key", "issue", "--tenant", "acme", "--user", "bob", "--ttl", "soon"); code == 0 || !strings.Contains(out, "ttl") {
		t.Fatalf("--ttl soon: exit %d %s", code, out)
	}
}

// TestTheSecretComesLastShownOnce: key issue and key rotate print the
// secret as the last thing, with the warning that it is shown once (it was
// a row in the middle of the key's attributes).
func TestTheSecretComesLastShownOnce(t *testing.T) {
	e := startAdmin(t)
	run := func(args ...string) string { t.Helper(); return mustKeytrail(t, e.dir, args...) }
	run("tenant", "create", "acme", "--name", "Acme")
	run("user", "create", "--tenant", "acme", "bob")
	issued := run("key", "issue", "--tenant", "acme", "--user", "bob")
	id := ""
	for _, line := range strings.Split(issued, "\n") {
		if v, ok := strings.CutPrefix(line, "id:"); ok {
			id = strings.TrimSpace(v)
		}
	}
	rotated := run("key", "rotate", "--tenant", "acme", id)
	for name, out := range map[string]string{"issue": issued, "rotate": rotated} {
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		n := len(lines)
		if n < 3 || !strings.HasPrefix(lines[n-2], "secret: kt_") || !strings.Contains(lines[n-1], "shown once") || strings.Count(out, "kt_") != 1+strings.Count(out, "hint:") {
			t.Fatalf("key %s: the secret is not last with its warning:\n%s", name, out)
		}
	}
}

// TestFlagsMayComeBeforeTheCommand: global flags before the noun and the
// verb (they were taken for an unknown command).
func TestFlagsMayComeBeforeTheCommand(t *testing.T) {
	e := startAdmin(t)
	run := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := app.MainEnv(testCtx(t, 30*time.Second), args, &out, &errb, func(string) string { return "" })
		return out.String() + errb.String(), code
	}
	if out, code := run("--data", e.dir, "tenant", "create", "acme", "--name", "Acme"); code != 0 {
		t.Fatalf("flags before the noun: %d %s", code, out)
	}
	if out, code := run("--data", e.dir, "tenant", "-o", "json", "get", "acme"); code != 0 || !strings.Contains(out, `"id": "acme"`) {
		t.Fatalf("flags before the verb: %d %s", code, out)
	}
}

// TestListAllPagesThrough: --all prints every page as one list (a list
// printed its first page and "more: --cursor").
func TestListAllPagesThrough(t *testing.T) {
	e := startAdmin(t)
	run := func(args ...string) string { t.Helper(); return mustKeytrail(t, e.dir, args...) }
	run("tenant", "create", "acme", "--name", "Acme")
	for i := range 5 {
		run("user", "create", "--tenant", "acme", fmt.Sprintf("u%d", i))
	}
	if first := run("user", "list", "--tenant", "acme", "--limit", "2"); !strings.Contains(first, "more: --cursor") {
		t.Fatalf("one page of 2: %s", first)
	}
	// (The list is the read model's, which follows the last create by a
	// moment.)
	testkit.Eventually(t, 10*time.Second, func() error {
		out := run("user", "list", "--tenant", "acme", "--limit", "2", "--all", "-o", "json")
		var got struct {
			Users []struct{ ID string } `json:"users"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Users) != 5 {
			return fmt.Errorf("--all: %v %s", err, out)
		}
		return nil
	})
}

// keytrail runs the command line in this process against a dev's data
// directory (its flags first, so that they may be overridden) and returns
// what it printed and its exit status.
func keytrail(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := app.MainEnv(testCtx(t, 30*time.Second), append([]string{args[0]}, append([]string{"--data", dir}, args[1:]...)...), &out, &errb, func(string) string { return "" })
	return out.String() + errb.String(), code
}

// mustKeytrail is keytrail for a command that must succeed; it returns
// what it printed.
func mustKeytrail(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, code := keytrail(t, dir, args...)
	if code != 0 {
		t.Fatalf("keytrail %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}
