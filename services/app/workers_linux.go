package app

import (
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// endWithParent has the kernel send a worker SIGTERM when its supervisor
// dies, even by SIGKILL: no worker outlives it holding the port.
// Each worker is in a process group of its own: a signal to the
// supervisor's group (a terminal's, `kill -HUP -PGID`) reaches the
// supervisor only, which passes on what workers should get, when they can
// take it.
func endWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
}

// listenWhenReady binds addr with SO_REUSEPORT at once (the address is
// this process's, port 0 chosen) and listens only when listen is called: a
// bound socket that does not listen is given no connection, so processes
// sharing the port serve while this one gets ready.
func listenWhenReady(addr string) (string, func() (net.Listener, error), io.Closer, error) {
	held, got, err := holdPort(addr)
	if err != nil {
		return "", nil, nil, err
	}
	f := held.(*os.File)
	return got, func() (net.Listener, error) {
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, err
		}
		var lerr error
		if err := rc.Control(func(fd uintptr) { lerr = unix.Listen(int(fd), 4096) }); err != nil {
			return nil, err
		}
		if lerr != nil {
			return nil, os.NewSyscallError("listen", lerr)
		}
		return net.FileListener(f)
	}, f, nil
}

// holdPort binds a socket to addr with SO_REUSEPORT, without listening on
// it, and returns it and the address it holds (the port chosen, for port
// 0). Workers of the same user bind the port beside it; while it is held,
// no other user can bind the port, even when every worker is down. Not
// listening, it is given no connection.
func holdPort(addr string) (io.Closer, string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", err
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	var sa unix.Sockaddr
	family := unix.AF_INET6
	if ip4 := ta.IP.To4(); ip4 != nil && !ta.IP.IsUnspecified() {
		family = unix.AF_INET
		a := &unix.SockaddrInet4{Port: ta.Port}
		copy(a.Addr[:], ip4)
		sa = a
	} else {
		// Unspecified (":P", "0.0.0.0:P", "[::]:P"): [::] for IPv6 and
		// IPv4 both, as net.Listen binds them.
		a := &unix.SockaddrInet6{Port: ta.Port}
		if !ta.IP.IsUnspecified() && ta.IP != nil {
			copy(a.Addr[:], ta.IP.To16())
		}
		sa = a
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, "", err
	}
	f := os.NewFile(uintptr(fd), "gateway-port")
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		f.Close()
		return nil, "", err
	}
	if family == unix.AF_INET6 && (ta.IP == nil || ta.IP.IsUnspecified()) {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			f.Close()
			return nil, "", err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		f.Close()
		return nil, "", &net.OpError{Op: "listen", Net: "tcp", Addr: ta, Err: os.NewSyscallError("bind", err)}
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		f.Close()
		return nil, "", err
	}
	port := 0
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	}
	return f, net.JoinHostPort(host, strconv.Itoa(port)), nil
}
