package app

import (
	"net"
	"strconv"
	"testing"
)

// TestHoldPortHoldsEveryAddressOfAWildcard: a port held for "0.0.0.0:P"
// (or ":P") is held for IPv4 and IPv6 both, as net.Listen then binds both;
// for 127.0.0.1 it is held there; a held port takes no connection.
func TestHoldPortHoldsEveryAddressOfAWildcard(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "127.0.0.1:0"} {
		held, got, err := holdPort(addr)
		if err != nil {
			t.Fatal(addr, err)
		}
		_, port, _ := net.SplitHostPort(got)
		if port == "0" {
			t.Fatalf("%s: held %s", addr, got)
		}
		tries := []string{"127.0.0.1"}
		if addr != "127.0.0.1:0" {
			if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
				ln.Close()
				tries = append(tries, "::1")
			}
		}
		for _, host := range tries {
			if ln, err := net.Listen("tcp", net.JoinHostPort(host, port)); err == nil {
				ln.Close()
				t.Errorf("%s held as %s: another listener took %s", addr, got, net.JoinHostPort(host, port))
			}
			if c, err := net.Dial("tcp", net.JoinHostPort(host, port)); err == nil {
				c.Close()
				t.Errorf("%s held as %s: a connection to %s was accepted", addr, got, host)
			}
		}
		held.Close()
		if _, err := strconv.Atoi(port); err != nil {
			t.Fatal(err)
		}
	}
}
