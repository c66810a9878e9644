package app

import (
	"os/exec"
	"syscall"
)

// endWithParent has the kernel send a worker SIGTERM when its supervisor
// dies, even by SIGKILL: no worker outlives it holding the port.
func endWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
