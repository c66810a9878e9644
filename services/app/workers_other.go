//go:build !linux

package app

import (
	"errors"
	"io"
	"net"
	"os/exec"
)

// endWithParent: only Linux can; --workers needs Linux anyway (--reuse-port).
func endWithParent(*exec.Cmd) {}

// holdPort is Linux's only, as --workers is.
func holdPort(string) (io.Closer, string, error) {
	return nil, "", errors.New("-workers is supported on Linux only")
}

// listenWhenReady is Linux's only, as --reuse-port is.
func listenWhenReady(string) (string, func() (net.Listener, error), io.Closer, error) {
	return "", nil, nil, errors.New("-reuse-port is supported on Linux only")
}
