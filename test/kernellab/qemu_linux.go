//go:build linux

package kernellab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// qemuBin is Debian's qemu-system-x86 binary.
const qemuBin = "qemu-system-x86_64"

// bootSpec is one guest boot.
type bootSpec struct {
	vmlinuz, initrd string
	labDir, srcDir  string // 9p shares "lab" and "src" (read-only)
	serialLog       string // the guest's console (kernel messages, /init)
	socket          string // unix socket qemu connects the results port to
	memMiB, cpus    int
	accel           string // "tcg" (default): /dev/kvm exists on these VMs but a KVM guest hangs
}

func (b bootSpec) args() []string {
	cpu := "max"
	if b.accel == "kvm" {
		cpu = "host"
	}
	return []string{
		"-accel", b.accel, "-cpu", cpu, "-m", strconv.Itoa(b.memMiB), "-smp", strconv.Itoa(b.cpus),
		"-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
		"-kernel", b.vmlinuz, "-initrd", b.initrd,
		// panic=-1 + -no-reboot: a guest panic ends qemu at once. mitigations=off: page
		// table isolation and friends cost much under emulation and guard nothing here.
		"-append", "console=ttyS0 quiet loglevel=4 panic=-1 oops=panic mitigations=off rdinit=/init",
		"-serial", "file:" + b.serialLog,
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=results,path=" + b.socket,
		"-device", "virtserialport,chardev=results,name=" + resultsPort,
		"-virtfs", "local,path=" + b.labDir + ",mount_tag=lab,security_model=none,readonly=on",
		"-virtfs", "local,path=" + b.srcDir + ",mount_tag=src,security_model=none,readonly=on",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
	}
}

// guest is a running qemu.
type guest struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{} // closed when qemu has exited
	rc    int           // qemu's exit status, valid after done
	err   error         // wait error other than an exit status
}

// bootGuest starts qemu and streams the results port's lines. qemu is killed (by its
// PID, and its process group) when ctx ends, when the test process dies (Pdeathsig) and
// in t.Cleanup; nothing is left running.
func bootGuest(ctx context.Context, t *testing.T, b bootSpec) (*guest, error) {
	ln, err := net.Listen("unix", b.socket)
	if err != nil {
		return nil, fmt.Errorf("results socket: %w", err)
	}
	cmd := exec.Command(qemuBin, b.args()...)
	qlog, err := os.Create(b.serialLog + ".qemu")
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = qlog, qlog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = ln.Close()
		_ = qlog.Close()
		return nil, fmt.Errorf("start %s: %w", qemuBin, err)
	}
	g := &guest{cmd: cmd, lines: make(chan string, 4096), done: make(chan struct{})}
	pid := cmd.Process.Pid
	kill := func() { _ = syscall.Kill(-pid, syscall.SIGKILL); _ = cmd.Process.Kill() }
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			kill()
			<-g.done
		}
		_ = ln.Close()
	})
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			g.rc = 0
		case errors.As(err, &ee) && ee.ExitCode() >= 0:
			g.rc = ee.ExitCode()
		default:
			g.rc, g.err = -1, err
		}
		_ = qlog.Close()
		_ = ln.Close() // unblocks Accept if qemu never connected
		close(g.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			kill()
		case <-g.done:
		}
	}()
	go func() {
		defer close(g.lines)
		_ = ln.(*net.UnixListener).SetDeadline(time.Now().Add(60 * time.Second))
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		go func() { <-g.done; _ = conn.SetReadDeadline(time.Now().Add(2 * time.Second)) }()
		sc := bufio.NewScanner(conn)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			g.lines <- sc.Text()
		}
	}()
	return g, nil
}

// wait waits for qemu to exit.
func (g *guest) wait() (int, error) {
	<-g.done
	return g.rc, g.err
}
