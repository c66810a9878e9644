package h1

import (
	"net"
	"syscall"
)

// quiet reports whether nothing can be read from an idle connection: an
// upstream that closed it has sent its end (and a TLS one its close
// alert), so anything readable means it is gone. One non-blocking peek.
func quiet(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		nc, isNet := netConnOf(c)
		if !isNet {
			return true // cannot tell: let the request find out
		}
		sc = nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	readable := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		readable = n > 0 || (err == nil && n == 0) // data, or the end
		return true                                // never wait
	})
	return !readable
}
