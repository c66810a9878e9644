//go:build !linux

package app

import "os/exec"

// endWithParent: only Linux can; --workers needs Linux anyway (--reuse-port).
func endWithParent(*exec.Cmd) {}
