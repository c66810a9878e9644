package h1

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a connected pair of loopback TCP connections: a (raw when
// wrapped by the caller) and its peer b.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p := <-accepted
	if p == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	return c.(*net.TCPConn), p.(*net.TCPConn)
}

func rawPair(t *testing.T) (*rawConn, *net.TCPConn) {
	a, b := tcpPair(t)
	rc, ok := raw(a).(*rawConn)
	if !ok {
		t.Fatal("raw did not wrap a TCP connection")
	}
	return rc, b
}

// A raw read waits for data through the poller, and ends at its deadline,
// at the peer's end and at Close as net's own does.
func TestRawReadsWaitAndEndAsNetsDo(t *testing.T) {
	c, peer := rawPair(t)

	got := make(chan string, 1)
	go func() {
		b := make([]byte, 16)
		n, err := c.Read(b)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(b[:n])
	}()
	select {
	case s := <-got:
		t.Fatalf("a read with nothing sent returned %q", s)
	case <-time.After(20 * time.Millisecond): // it must still be waiting: nothing was sent
	}
	peer.Write([]byte("hello"))
	if s := <-got; s != "hello" {
		t.Fatalf("read %q, want hello", s)
	}

	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	n, err := c.Read(make([]byte, 4))
	var ne net.Error
	var op *net.OpError
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %d, %v; want a timeout", n, err)
	}
	if !errors.As(err, &op) || op.Op != "read" {
		t.Fatalf("a read's timeout %v; want it named as net names it (read)", err)
	}
	c.SetReadDeadline(time.Time{})

	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("an empty read: %d, %v", n, err)
	}
	peer.Write([]byte("bye"))
	peer.CloseWrite()
	b, err := io.ReadAll(c)
	if string(b) != "bye" || err != nil {
		t.Fatalf("read to the end: %q, %v", b, err)
	}
	if n, err := c.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("after the end: %d, %v; want EOF", n, err)
	}

	// A read waiting when the connection is closed returns net.ErrClosed.
	c2, _ := rawPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := c2.Read(make([]byte, 4))
		done <- err
	}()
	time.AfterFunc(10*time.Millisecond, func() { c2.Close() })
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a read across Close: %v; want net.ErrClosed", err)
	}
	if n, err := c2.Read(nil); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("an empty read of a closed connection: %d, %v; want net.ErrClosed", n, err)
	}
}

// A write larger than the socket's buffers waits for room as often as it
// needs and delivers every byte in order; one the peer never takes ends at
// its deadline, having written part.
func TestRawWritesDeliverEverythingOrTimeOut(t *testing.T) {
	c, peer := rawPair(t)
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	sum := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		buf := make([]byte, 1000) // slowly, in small reads: the writer must wait
		io.CopyBuffer(h, io.LimitReader(peer, int64(len(data))), buf)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		sum <- s
	}()
	n, err := c.Write(data)
	if n != len(data) || err != nil {
		t.Fatalf("write: %d of %d, %v", n, len(data), err)
	}
	if got := <-sum; got != sha256.Sum256(data) {
		t.Fatal("the peer read other bytes than were written")
	}

	big := make([]byte, 64<<20) // made before the deadline starts: under -race that takes a while
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err = c.Write(big) // nobody reads
	var ne net.Error
	var op *net.OpError
	if !errors.As(err, &ne) || !ne.Timeout() || n >= len(big) {
		t.Fatalf("a write nobody takes: %d, %v; want at most part of it and a timeout", n, err)
	}
	if !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("a write's timeout %v; want it named as net names it (write)", err)
	}
}

// A write to a connection the peer reset is an error, not the end of the
// process (SIGPIPE), and says which call failed.
func TestRawWriteToAResetConnectionIsAnError(t *testing.T) {
	c, peer := rawPair(t)
	peer.SetLinger(0)
	peer.Close() // a reset
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write(bytes.Repeat([]byte("x"), 1024))
	}
	var errno syscall.Errno
	var op *net.OpError
	if !errors.As(err, &errno) || !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("writing to a reset connection: %v; want a write OpError with its errno", err)
	}
	if errno != syscall.ECONNRESET && errno != syscall.EPIPE {
		t.Fatalf("errno %v, want ECONNRESET or EPIPE", errno)
	}
}

// What the server and the transport rely on besides Read and Write: the
// connection's own CloseWrite and SyscallConn (quiet peeks through it).
func TestRawConnKeepsTheConnectionsOtherMethods(t *testing.T) {
	c, peer := rawPair(t)
	if !quiet(c) {
		t.Fatal("an idle connection is not quiet")
	}
	peer.Write([]byte("x"))
	readable := func() error {
		if quiet(c) {
			return errors.New("still quiet")
		}
		return nil
	}
	for deadline := time.Now().Add(5 * time.Second); readable() != nil; {
		if time.Now().After(deadline) {
			t.Fatal("a connection with a byte to read is still quiet")
		}
		runtime.Gosched()
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(peer); len(b) != 0 || err != nil {
		t.Fatalf("after CloseWrite the peer read %q, %v", b, err)
	}
}

// plain makes connections raw exactly when the process has one processor.
func TestPlainIsRawWithOneProcessorOnly(t *testing.T) {
	a, _ := tcpPair(t)
	prev := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(prev)
	if _, ok := plain(a).(*rawConn); ok {
		t.Fatal("with two processors a connection was made raw")
	}
	runtime.GOMAXPROCS(1)
	if _, ok := plain(a).(*rawConn); !ok {
		t.Fatal("with one processor a connection was not made raw")
	}

	// A socket made blocking (File and Fd do that, for the connection's
	// other descriptors too) would hold the processor in the kernel: left
	// as it is.
	b, _ := tcpPair(t)
	f, err := b.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Fd()
	if _, ok := plain(b).(*rawConn); ok {
		t.Fatal("a blocking socket was made raw")
	}

	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	uc, err := net.Dial("udp", u.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if plain(uc) != uc {
		t.Fatal("a connection other than TCP was wrapped")
	}
}
