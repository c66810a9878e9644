//go:build linux && race

package h1

import "syscall"

// sysRead and sysWrite, under the race detector: syscall's own calls, which
// tell the detector what the kernel read and wrote (and order a write
// before the read that sees it). Raw calls would hide races on the
// connection's buffers and report false ones.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
