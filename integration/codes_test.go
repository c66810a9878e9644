package integration

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/keytrail/keytrail/client"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/adminhttp"
	"github.com/keytrail/keytrail/services/gateway"
)

var update = flag.Bool("update", false, "rewrite generated docs (docs/codes.md)")

// TestClientCodesAreTheServers: the client's outcome and problem constants
// are the server's tables, no more and no fewer.
func TestClientCodesAreTheServers(t *testing.T) {
	if got, want := client.Outcomes, projections.Codes(); !slices.Equal(got, want) {
		t.Errorf("client.Outcomes %v\nserver table   %v", got, want)
	}
	var got, want []string
	for _, c := range client.ProblemCodes {
		got = append(got, string(c))
	}
	for _, p := range adminhttp.ProblemCodes() {
		want = append(want, string(p.Code))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("client.ProblemCodes %v\nserver table        %v", got, want)
	}
}

// TestCodesDocIsTheTables: docs/codes.md is generated from the code tables
// (go test ./integration -run TestCodesDocIsTheTables -update rewrites it).
func TestCodesDocIsTheTables(t *testing.T) {
	want := codesDoc()
	const path = "../docs/codes.md"
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is not what the code tables say; run: go test ./integration -run TestCodesDocIsTheTables -update", path)
	}
}

func codesDoc() string {
	var b strings.Builder
	b.WriteString(`# Codes

Generated from the code tables (projections/outcomes.go, services/gateway/problems.go,
services/adminhttp/problem.go) by ` + "`go test ./integration -run TestCodesDocIsTheTables -update`" + `;
do not edit by hand. Every problem's ` + "`type`" + ` is ` + "`https://keytrail.dev/problems/<code>`" + `.

## Verification outcomes

One primary code per verification, in this precedence (the first failing check wins;
every other failing check is listed in ` + "`also`" + `). The gateway answers a denial as a
problem with the code, the title and the detail below.

| code | meaning | gateway status | title | detail |
|---|---|---|---|---|
`)
	for _, o := range projections.Outcomes() {
		fmt.Fprintf(&b, "| `%s` | %s | %d | %s | %s |\n", o.Code, o.Meaning, o.Status, o.Title, strings.ReplaceAll(o.Detail, "<", "&lt;"))
	}
	b.WriteString(`
## Gateway problems

Answers of the gateway that are not a decision on a key.

| code | statuses | title | meaning |
|---|---|---|---|
`)
	for _, p := range gateway.GatewayProblems() {
		var st []string
		for _, s := range p.Statuses {
			st = append(st, fmt.Sprint(s))
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", p.Code, strings.Join(st, ", "), p.Title, p.Meaning)
	}
	b.WriteString(`
## Admin API problems

| code | status | title |
|---|---|---|
`)
	for _, p := range adminhttp.ProblemCodes() {
		fmt.Fprintf(&b, "| `%s` | %d | %s |\n", p.Code, p.Status, p.Title)
	}
	return b.String()
}
