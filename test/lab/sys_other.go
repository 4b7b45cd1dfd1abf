//go:build !linux

package lab

import (
	"errors"
	"os"
	"syscall"
)

// errNotSupported: the lab needs Linux; StartOVS skips before any of these is reached.
var errNotSupported = errors.New("lab: not supported on this OS")

func daemonAttr() *syscall.SysProcAttr { return nil }
func lockFile(*os.File) error          { return errNotSupported }
func unlockFile(*os.File) error        { return errNotSupported }
func mountHugetlbfs(string) error      { return errNotSupported }
func unmount(string)                   {}
