package integration

import (
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/keytrail/keytrail"

// layers are the one-way rule `cmd → services → projections → events`:
// a package may import packages of its own layer or of the ones after it,
// never of one before. client stands beside services (services/app's CLI
// uses it; it knows nothing of the server's code); internal holds test
// helpers anyone may use.
var layers = [][]string{{"cmd/"}, {"services/", "client"}, {"projections"}, {"events"}}

// pure reports whether a package may do no I/O: the folds and Verify take
// state and a time and return a decision; the vocabulary and the secret
// format are data. (The event store, events/store, is where NATS enters.)
func pure(pkg string) bool {
	return under(pkg, "projections") || pkg == "events" || pkg == "events/secret"
}

// ioImport reports whether an import does I/O or reaches NATS (net/url and
// net/netip only parse).
func ioImport(imp string) bool {
	if imp == "net/url" || imp == "net/netip" {
		return false
	}
	for _, p := range []string{"net", "os", "syscall", "io/ioutil"} {
		if under(imp, p) {
			return true
		}
	}
	return strings.HasPrefix(imp, "github.com/nats-io/")
}

// TestImportsPointOneWay fails when a package imports against the layers,
// when a pure package imports anything with I/O, when the embedded NATS
// server is imported outside services/natsnode, or when client imports the
// server's code. Test files are exempt (tests start real servers).
func TestImportsPointOneWay(t *testing.T) {
	checked := 0
	err := eachGoFile("..", func(path, pkg string) error {
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			if why := forbidden(pkg, imp); why != "" {
				t.Errorf("%s imports %s: %s", path, imp, why)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files", checked)
	}
}

// forbidden says why pkg (a path in the module) may not import imp, "" when
// it may.
func forbidden(pkg, imp string) string {
	if strings.HasPrefix(imp, "github.com/nats-io/nats-server/") && !under(pkg, "services/natsnode") {
		return "only services/natsnode embeds the NATS server"
	}
	if pure(pkg) && ioImport(imp) {
		return pkg + " is pure: no I/O, no NATS (the event store lives in events/store)"
	}
	inner, ok := strings.CutPrefix(imp, module+"/")
	if !ok {
		return ""
	}
	if under(inner, "internal") {
		return ""
	}
	if under(pkg, "client") && (under(inner, "services") || under(inner, "cmd")) {
		return "client knows the API, not the server's code"
	}
	from, to := layerOf(pkg), layerOf(inner)
	if from >= 0 && to >= 0 && to < from {
		return "imports point cmd → services → projections → events"
	}
	return ""
}

func layerOf(pkg string) int {
	for i, prefixes := range layers {
		for _, p := range prefixes {
			if under(pkg, strings.TrimSuffix(p, "/")) {
				return i
			}
		}
	}
	return -1
}

// under reports whether pkg is dir or below it.
func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// TestTheImportRuleCatches: the rule itself, on imports that break it.
func TestTheImportRuleCatches(t *testing.T) {
	for _, c := range []struct {
		pkg, imp string
		bad      bool
	}{
		{"projections", module + "/services/readmodel", true},
		{"events", module + "/projections", true},
		{"projections", "net/http", true},
		{"projections", "github.com/nats-io/nats.go", true},
		{"services/gateway", "github.com/nats-io/nats-server/v2/server", true},
		{"client", module + "/services/control", true},
		{"services/control", module + "/cmd/keytrail", true},
		{"events/store", "github.com/nats-io/nats.go", false},
		{"events", "net/url", false},
		{"projections", "os", true},
		{"services/gateway", module + "/projections", false},
		{"projections", module + "/events", false},
		{"services/natsnode", "github.com/nats-io/nats-server/v2/server", false},
		{"services/app", module + "/client", false},
	} {
		if got := forbidden(c.pkg, c.imp) != ""; got != c.bad {
			t.Errorf("%s importing %s: forbidden %v, want %v", c.pkg, c.imp, got, c.bad)
		}
	}
}
