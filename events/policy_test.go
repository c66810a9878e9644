package events

import (
	"reflect"
	"strings"
	"testing"
)

// Keys written before policies existed carry no "policies" member; their
// golden files (TestGolden) still decode to the same events. A key that
// references policies round-trips, and a bad reference is refused by the
// encoder and the decoder alike.
func TestKeyPoliciesRoundTrip(t *testing.T) {
	for _, typ := range []Type{KeyIssued, KeyUpdated} {
		e := sample(typ)
		switch p := e.Data.(type) {
		case KeyIssuedV1:
			p.Policies = []string{"billing-ro", "orders-rw"}
			e.Data = p
		case KeyUpdatedV1:
			p.Policies = []string{"billing-ro"}
			e.Data = p
		}
		b, err := Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"policies":["billing-ro"`) {
			t.Fatalf("%s: policies not encoded: %s", typ, b)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("%s: decode(encode) = %+v, want %+v", typ, got, e)
		}
	}
	for name, policies := range map[string][]string{
		"duplicate": {"billing-ro", "billing-ro"},
		"bad id":    {"Billing"},
		"dot":       {"a.b"},
		"too many":  {"a", "b", "c", "d", "e", "f", "g", "h", "i"},
	} {
		e := sample(KeyIssued)
		p := e.Data.(KeyIssuedV1)
		p.Policies = policies
		e.Data = p
		if _, err := Encode(&e); err == nil {
			t.Errorf("%s: encoded a key with policies %q", name, policies)
		}
	}
}

func TestPolicyPayloadsAreChecked(t *testing.T) {
	for name, p := range map[string]PolicyCreatedV1{
		"max_ttl not a duration": {Scopes: []string{"a"}, MaxTTL: "soon"},
		"max_ttl too short":      {Scopes: []string{"a"}, MaxTTL: "30s"},
		"max_ttl too long":       {Scopes: []string{"a"}, MaxTTL: "4000d"},
		"api not an id":          {Scopes: []string{"a"}, APIs: []string{"Orders"}},
		"api twice":              {Scopes: []string{"a"}, APIs: []string{"orders", "orders"}},
		"scope twice":            {Scopes: []string{"a", "a"}},
		"bad rate":               {Scopes: []string{"a"}, RateLimit: &RateLimit{PerSecond: 0, Burst: 1}},
	} {
		if err := ValidatePayload(p); err == nil {
			t.Errorf("%s: %+v accepted", name, p)
		}
	}
	if err := ValidatePayload(PolicyCreatedV1{Scopes: []string{"orders:read"}, MaxTTL: "90d", APIs: []string{"orders"}}); err != nil {
		t.Fatal(err)
	}
	if got := PolicyTTL("90d").Hours(); got != 90*24 {
		t.Fatalf("PolicyTTL(90d) = %vh", got)
	}
}
