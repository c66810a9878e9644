package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "write golden files for new type versions (never rewrite an existing one)")

func goldenPath(t Type, v int) string {
	return filepath.Join("testdata", "golden", fmt.Sprintf("%s.v%d.json", t, v))
}

// TestGolden pins the wire encoding of every event type at every version. A
// failure here is a compatibility decision, not a test to update: stored
// events are never rewritten, so a change must be a new version plus an
// upcaster.
func TestGolden(t *testing.T) {
	for _, typ := range Types() {
		t.Run(string(typ), func(t *testing.T) {
			_, v, _ := KindOf(typ)
			e := sample(typ)
			got, err := Encode(&e)
			if err != nil {
				t.Fatal(err)
			}
			path := goldenPath(typ, v)
			want, err := os.ReadFile(path)
			if os.IsNotExist(err) && *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err != nil {
				t.Fatalf("no golden file for %s v%d: %v (run go test ./events -run TestGolden -update)", typ, v, err)
			}
			want = bytes.TrimSuffix(want, []byte("\n"))
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding of %s v%d changed:\n got %s\nwant %s", typ, v, got, want)
			}
			dec, err := Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dec, e) {
				t.Fatalf("decode(golden) = %+v, want %+v", dec, e)
			}
		})
	}
}

// TestGoldenFilesAllDecode: every golden file ever written, including those
// of old versions, must still decode (through upcasters if need be).
func TestGoldenFilesAllDecode(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < len(Types()) {
		t.Fatalf("%d golden files for %d types", len(files), len(Types()))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(bytes.TrimSuffix(b, []byte("\n"))); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestEncodeNormalizesToUTC(t *testing.T) {
	e := sample(KeyRotated)
	zone := time.FixedZone("X", 5*3600)
	e.OccurredAt = e.OccurredAt.In(zone)
	p := e.Data.(KeyRotatedV1)
	p.GraceUntil = p.GraceUntil.In(zone)
	e.Data = p
	a, err := Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	want := sample(KeyRotated)
	b, _ := Encode(&want)
	if !bytes.Equal(a, b) {
		t.Fatalf("zones leak into the encoding:\n%s\n%s", a, b)
	}
}

func TestDecodeRejects(t *testing.T) {
	e := sample(KeyIssued)
	good, err := Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	data := func(f func(m map[string]any)) []byte {
		return edit(func(m map[string]any) { f(m["data"].(map[string]any)) })
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"not json", []byte("garbage"), ErrMalformed},
		{"array", []byte("[]"), ErrMalformed},
		{"trailing data", append(append([]byte{}, good...), []byte(" {}")...), ErrMalformed},
		{"too large", bytes.Repeat([]byte(" "), MaxEventSize+1), ErrTooLarge},
		{"unknown envelope field", edit(func(m map[string]any) { m["extra"] = 1 }), ErrMalformed},
		{"unknown payload field", data(func(m map[string]any) { m["secret"] = "kt_x" }), ErrMalformed},
		{"unknown type", edit(func(m map[string]any) { m["type"] = "key.exploded" }), ErrUnknownType},
		{"future version", edit(func(m map[string]any) { m["v"] = 2 }), ErrUnknownVersion},
		{"version zero", edit(func(m map[string]any) { m["v"] = 0 }), ErrUnknownVersion},
		{"missing data", edit(func(m map[string]any) { delete(m, "data") }), ErrMalformed},
		{"null data", edit(func(m map[string]any) { m["data"] = nil }), ErrMalformed},
		{"bad id", edit(func(m map[string]any) { m["id"] = "not-a-ulid" }), ErrMalformed},
		{"lower-case ulid", edit(func(m map[string]any) { m["id"] = strings.ToLower(e.ID) }), ErrMalformed},
		{"tenant with dot", edit(func(m map[string]any) { m["tenant"] = "ac.me" }), ErrMalformed},
		{"key id wildcard", edit(func(m map[string]any) { m["aggregate"].(map[string]any)["id"] = "key_*" }), ErrMalformed},
		{"user with space", edit(func(m map[string]any) { m["aggregate"].(map[string]any)["user"] = "al ice" }), ErrMalformed},
		{"kind mismatch", edit(func(m map[string]any) { m["aggregate"].(map[string]any)["kind"] = "user" }), ErrMalformed},
		{"missing actor", edit(func(m map[string]any) { delete(m, "actor") }), ErrMalformed},
		{"control char in reason", edit(func(m map[string]any) { m["reason"] = "a\x1b[31m" }), ErrMalformed},
		{"missing time", edit(func(m map[string]any) { delete(m, "occurred_at") }), ErrMalformed},
		{"bad command id", edit(func(m map[string]any) { m["command_id"] = "a b" }), ErrMalformed},
		{"zero prev hash", edit(func(m map[string]any) { m["prev_hash"] = strings.Repeat("0", 64) }), ErrMalformed},
		{"short prev hash", edit(func(m map[string]any) { m["prev_hash"] = "abcd" }), ErrMalformed},
		{"upper-case hash", data(func(m map[string]any) { m["secret_sha256"] = strings.Repeat("A", 64) }), ErrMalformed},
		{"zero secret hash", data(func(m map[string]any) { m["secret_sha256"] = strings.Repeat("0", 64) }), ErrMalformed},
		{"bad scope", data(func(m map[string]any) { m["scopes"] = []string{"orders read"} }), ErrMalformed},
		{"dup scope", data(func(m map[string]any) { m["scopes"] = []string{"a", "a"} }), ErrMalformed},
		{"negative burst", data(func(m map[string]any) { m["rate_limit"] = map[string]any{"per_second": 1, "burst": -1} }), ErrMalformed},
		{"expiry before not-before", data(func(m map[string]any) { m["expires_at"] = "2020-01-01T00:00:00Z" }), ErrMalformed},
		{"string as number", data(func(m map[string]any) { m["rate_limit"] = map[string]any{"per_second": "1", "burst": 1} }), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("Decode = %v, want %v", err, c.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%T is not a *DecodeError", err)
			}
		})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	for name, mutate := range map[string]func(*Event){
		"payload of another type": func(e *Event) { e.Data = KeyRevokedV1{} },
		"no payload":              func(e *Event) { e.Data = nil },
		"tenant aggregate id": func(e *Event) {
			e.Type, e.Aggregate, e.Data = TenantCreated, TenantAggregate("other"), TenantCreatedV1{Name: "x"}
		},
		"bad upstream": func(e *Event) { e.Type, e.Aggregate, e.Data = APIRetired, APIAggregate("a.b"), APIRetiredV1{} },
		"zero time":    func(e *Event) { e.OccurredAt = time.Time{} },
	} {
		t.Run(name, func(t *testing.T) {
			e := sample(KeyIssued)
			mutate(&e)
			if _, err := Encode(&e); err == nil {
				t.Fatal("Encode accepted an invalid event")
			}
		})
	}
}

// TestUpcasting shows the hook: suppose tenant.created v1 called its field
// "title" and v2 renamed it "name". A stored v1 event reads as v2 through the
// upcaster; without it, it is refused; a version from the future is refused.
func TestUpcasting(t *testing.T) {
	e := sample(TenantCreated)
	cur, err := Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	v1 := bytes.Replace(cur, []byte(`"name":`), []byte(`"title":`), 1)
	rename := func(d json.RawMessage) (json.RawMessage, error) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(d, &m); err != nil {
			return nil, err
		}
		m["name"] = m["title"]
		delete(m, "title")
		return json.Marshal(m)
	}
	v2 := Codec{versions: map[Type]int{TenantCreated: 2}}
	if _, err := v2.Decode(v1); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("v1 without an upcaster: %v", err)
	}
	v2.Upcasters = map[TypeVersion]Upcaster{{TenantCreated, 1}: rename}
	got, err := v2.Decode(v1)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || got.Data != (TenantCreatedV1{Name: "Acme Corp"}) {
		t.Fatalf("upcast = v%d %+v", got.Version, got.Data)
	}
	future := bytes.Replace(cur, []byte(`"v":1`), []byte(`"v":3`), 1)
	if _, err := v2.Decode(future); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("v3: %v", err)
	}
	broken := Codec{versions: v2.versions, Upcasters: map[TypeVersion]Upcaster{{TenantCreated, 1}: func(json.RawMessage) (json.RawMessage, error) {
		return nil, errors.New("boom")
	}}}
	if _, err := broken.Decode(v1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("failing upcaster: %v", err)
	}
}
