package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/services/app"
)

// TestCLIPoliciesDryRunsAndReports: the CLI defines a policy, issues a key
// that references it, previews a change with --dry-run (nothing appended,
// the key named with its decision before and after), makes it, and reads
// the reports as tables and as JSON.
func TestCLIPoliciesDryRunsAndReports(t *testing.T) {
	e := startAdmin(t)
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args = append(args, "--data", e.dir)
		if code := app.MainEnv(testCtx(t, 30*time.Second), args, &out, &errb, func(string) string { return "" }); code != 0 {
			t.Fatalf("keytrail %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
		return out.String()
	}
	run("tenant", "create", "acme", "--name", "Acme")
	run("user", "create", "--tenant", "acme", "bob")
	out := run("policy", "create", "--tenant", "acme", "readers", "--scope", "orders:read", "--scope", "orders:write", "--max-ttl", "90d", "--rate", "50/100")
	if !strings.Contains(out, "max_ttl:") || !strings.Contains(out, "90d") || !strings.Contains(out, "orders:read") {
		t.Fatalf("policy create: %s", out)
	}
	var issued struct {
		Key struct {
			ID       string
			Policies []string
		}
		Seq uint64
	}
	if err := json.Unmarshal([]byte(run("key", "issue", "--tenant", "acme", "--user", "bob", "--policy", "readers", "-o", "json")), &issued); err != nil ||
		len(issued.Key.Policies) != 1 {
		t.Fatalf("key issue: %v %+v", err, issued)
	}
	before := e.last()
	out = run("policy", "update", "--tenant", "acme", "readers", "--scope", "orders:read", "--dry-run", "--reason", "least privilege")
	if !strings.Contains(out, "dry run: nothing was appended") || !strings.Contains(out, "policy.updated") || !strings.Contains(out, "would change 1 key(s) of 1 user(s)") {
		t.Fatalf("policy update --dry-run: %s", out)
	}
	out = run("policy", "retire", "--tenant", "acme", "readers", "--dry-run")
	if !strings.Contains(out, "policy.retired") || !strings.Contains(out, issued.Key.ID) || !strings.Contains(out, "orders:write  VALID   INSUFFICIENT_SCOPE") {
		t.Fatalf("policy retire --dry-run: %s", out)
	}
	var preview struct {
		DryRun bool `json:"dry_run"`
		Impact struct {
			Keys []struct {
				Key     string
				Changes []struct{ API, Before, After string }
			}
		}
	}
	if err := json.Unmarshal([]byte(run("key", "revoke", "--tenant", "acme", issued.Key.ID, "--dry-run", "-o", "json")), &preview); err != nil ||
		!preview.DryRun || len(preview.Impact.Keys) != 1 || preview.Impact.Keys[0].Changes[0].After != "REVOKED" {
		t.Fatalf("key revoke --dry-run -o json: %v %+v", err, preview)
	}
	if after := e.last(); after != before {
		t.Fatalf("dry runs appended: %d → %d", before, after)
	}
	run("policy", "retire", "--tenant", "acme", "readers")
	run("user", "disable", "--tenant", "acme", "bob")
	e.must(e.call("GET", "/v1/tenants/acme", e.root, nil, "Keytrail-Min-Seq", fmt.Sprint(e.last())), 200)
	out = run("report", "retired-policy-keys", "--tenant", "acme")
	if !strings.Contains(out, "POLICY") || !strings.Contains(out, issued.Key.ID) || !strings.Contains(out, "readers") {
		t.Fatalf("report retired-policy-keys: %s", out)
	}
	out = run("report", "orphaned-keys", "--tenant", "acme")
	if !strings.Contains(out, issued.Key.ID) || !strings.Contains(out, "disabled") {
		t.Fatalf("report orphaned-keys: %s", out)
	}
	out = run("policy", "list", "--tenant", "acme")
	if !strings.Contains(out, "readers") || !strings.Contains(out, "retired") {
		t.Fatalf("policy list: %s", out)
	}
}
