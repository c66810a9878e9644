package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestInternalAddressesAreRefusedUnlessAllowed(t *testing.T) {
	var p Policy
	for _, a := range []string{"127.0.0.1:80", "127.8.9.10:1", "[::1]:80", "10.1.2.3:80", "172.16.0.1:80", "192.168.1.1:443",
		"169.254.169.254:80", "[fe80::1]:80", "[fd00:ec2::254]:80", "100.100.100.200:80", "[::ffff:127.0.0.1]:80",
		"0.0.0.0:80", "[::]:80", "224.0.0.1:80", "[ff02::1]:80", "[64:ff9b::7f00:1]:80",
		"[::127.0.0.1]:80", "[::a9fe:a9fe]:80", "[2002:7f00:1::]:80", "192.0.0.1:80", "198.18.0.1:80", "240.0.0.1:80", "255.255.255.255:80"} {
		if err := p.CheckAddr(netip.MustParseAddrPort(a)); !errors.Is(err, ErrDenied) {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, a := range []string{"8.8.8.8:443", "[2001:4860:4860::8888]:443", "93.184.216.34:80"} {
		if err := p.CheckAddr(netip.MustParseAddrPort(a)); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	allow, err := ParsePrefixes("10.20.0.0/16, 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p = Policy{Allow: allow}
	p.AddOwn("127.0.0.1:7400", "0.0.0.0:7480")
	for a, ok := range map[string]bool{"10.20.3.4:80": true, "10.21.3.4:80": false, "127.0.0.1:9000": true, "127.0.0.2:9000": false,
		"127.0.0.1:7400": false, "10.20.3.4:7480": false} {
		if err := p.CheckAddr(netip.MustParseAddrPort(a)); (err == nil) != ok {
			t.Errorf("%s: %v", a, err)
		}
	}
	if err := p.CheckAddr(netip.MustParseAddrPort("127.0.0.1:7400")); err == nil || !strings.Contains(err.Error(), "own listeners") {
		t.Errorf("own listener: %v", err)
	}
	if _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Error("a bad CIDR was accepted")
	}
}

func TestCheckURL(t *testing.T) {
	var p Policy
	for _, u := range []string{"http://127.0.0.1:9000/x", "http://localhost:9000", "http://LOCALHOST", "http://api.localhost/",
		"http://[::1]:80", "https://169.254.169.254/latest/meta-data", "http://10.0.0.5", "http://localhost.:18081/",
		"http://LocalHost./", "http://foo.localhost./", "http://[zz]/"} {
		if err := p.CheckURL(u); !errors.Is(err, ErrDenied) {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"https://api.example.com", "http://93.184.216.34:8080/base"} {
		if err := p.CheckURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
