//go:build !linux

package app

import (
	"errors"
	"syscall"
)

// reusePort is Linux's only, here.
func reusePort(_, _ string, _ syscall.RawConn) error {
	return errors.New("-reuse-port is supported on Linux only")
}
