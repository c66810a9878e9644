package h1

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
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

// plain is the connection the server and the transport read and write: in
// a process with one processor (GOMAXPROCS=1, as every worker of
// `keytrail gateway --workers` has), a TCP connection whose reads and
// writes are raw system calls; otherwise c itself.
//
// Why. Go enters every read and write of a socket as a system call that
// might block: the runtime marks its processor as lent, and its monitor
// thread, which sleeps 20 µs at a time while that happens often, takes the
// processor from a thread that stays in one for two of its ticks and hands
// it to another thread. With one processor that hand-off lets a second
// thread run Go code while the first is in the kernel, but a busy worker
// spent a seventh of its CPU time in the monitor's wake-ups, and more in
// waking threads to take the processor over: more than the overlap gained
// (docs/benchmarks.md: less CPU a request, more throughput, a tail no
// longer). A socket here is non-blocking: a read or a write returns at
// once, having moved what it could, and waiting is left to the poller, as
// before.
func plain(c net.Conn) net.Conn {
	if runtime.GOMAXPROCS(0) != 1 {
		return c
	}
	return raw(c)
}

// raw is c with raw reads and writes (rawConn), if c is a TCP connection
// whose socket is non-blocking (as net's are unless File or Fd made them
// blocking): a blocking read would hold the processor in the kernel.
func raw(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	nonblocking := false
	rc.Control(func(fd uintptr) {
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		nonblocking = errno == 0 && flags&syscall.O_NONBLOCK != 0
	})
	if !nonblocking {
		return c
	}
	return &rawConn{TCPConn: tc, rc: rc}
}

// rawConn is a TCP connection whose Read and Write are raw system calls on
// its non-blocking socket; waits (for data, for room to write), deadlines
// and Close are the poller's, through syscall.RawConn.
type rawConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		// As net's: nothing read, but a closed connection says so.
		if err := c.rc.Read(func(uintptr) bool { return true }); errors.Is(err, net.ErrClosed) {
			return 0, c.netError(err)
		}
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, e := sysRead(fd, p)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // the poller waits for data
			}
			n, errno = r, e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, c.netError(err)
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, e := sysWrite(fd, p[n:])
			switch e {
			case 0:
				n += r
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // the poller waits for room
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, c.netError(err)
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

// opError is what net's own Read and Write return for a failed call.
func (c *rawConn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// netError names a wait's error (a deadline, a close) as net's Read and
// Write do: "read" and "write", not syscall.RawConn's "raw-read" and
// "raw-write".
func (c *rawConn) netError(err error) error {
	if oe, ok := err.(*net.OpError); ok && strings.HasPrefix(oe.Op, "raw-") {
		named := *oe
		named.Op = strings.TrimPrefix(oe.Op, "raw-")
		return &named
	}
	return err
}
