//go:build !linux

package h1

import "net"

// quiet cannot peek here: a request with a body finds out by sending.
func quiet(net.Conn) bool { return true }

// plain is c: raw system calls are Linux's only (conn_linux.go).
func plain(c net.Conn) net.Conn { return c }
