package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// VMOptions describe a namespace "VM".
type VMOptions struct {
	IP  string // address with prefix on eth0, e.g. "10.0.0.1/24"
	MAC string // eth0 MAC ("" = kernel's random one)
	MTU int    // eth0 MTU (0 = 1500)
	// TxOffload keeps eth0's tx checksum offload on. Off by default: the OVS userspace
	// datapath forwards CHECKSUM_PARTIAL packets from veth as they are and the receiver
	// drops TCP with bad checksums, unless other_config:userspace-tso-enable=true.
	TxOffload bool
}

// VM is a network namespace with eth0, one end of a veth pair whose other end (HostIf)
// sits in the OVS namespace, ready to be added to a bridge as a system port.
type VM struct {
	NS     string // the VM's network namespace
	HostIf string // the veth end in OVS's namespace (the OVS port name)
	IP     string // eth0 address without the prefix
	MAC    string // eth0 MAC as the kernel reports it
}

// AddVM creates a namespace VM named name (also the host-side veth name, at most 15
// bytes) wired to this OVS's namespace. Deleted at cleanup.
func (o *OVS) AddVM(t testing.TB, name string, opts VMOptions) *VM {
	t.Helper()
	if o.opts.DBOnly {
		t.Fatal("lab: AddVM on a DBOnly lab")
	}
	if len(name) > 15 {
		t.Fatalf("lab: VM name %q longer than 15 bytes (it names the host veth)", name)
	}
	vm := &VM{NS: "ol" + o.ID + "-" + name, HostIf: name}
	mustRun(t, "ip", "netns", "add", vm.NS)
	t.Cleanup(func() { o.deleteNetns(vm.NS) })
	mustRun(t, "ip", "link", "add", name, "netns", o.NS, "type", "veth", "peer", "name", "eth0", "netns", vm.NS)
	mustRun(t, "ip", "-n", o.NS, "link", "set", name, "up")
	in := func(args ...string) { mustRun(t, "ip", append([]string{"-n", vm.NS}, args...)...) }
	in("link", "set", "lo", "up")
	if opts.MAC != "" {
		in("link", "set", "eth0", "address", opts.MAC)
	}
	if opts.MTU > 0 {
		in("link", "set", "eth0", "mtu", strconv.Itoa(opts.MTU))
	}
	if opts.IP != "" {
		in("addr", "add", opts.IP, "dev", "eth0")
		vm.IP, _, _ = strings.Cut(opts.IP, "/")
	}
	// No IPv6 chatter (router solicitations, DAD) in captures and counters.
	mustRun(t, "ip", "netns", "exec", vm.NS, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6")
	in("link", "set", "eth0", "up")
	if !opts.TxOffload {
		mustRun(t, "ip", "netns", "exec", vm.NS, "ethtool", "-K", "eth0", "tx", "off")
	}
	out := mustRun(t, "ip", "-n", vm.NS, "-o", "link", "show", "eth0")
	if i := strings.Index(out, "link/ether "); i >= 0 {
		vm.MAC = strings.Fields(out[i+len("link/ether "):])[0]
	}
	return vm
}

// Ping sends count pings (0.2 s apart, 2 s deadline each) from the VM to dst and
// returns ping's output and an error when any reply is missing.
func (v *VM) Ping(dst string, count int) (string, error) {
	return Run("ip", "netns", "exec", v.NS, "ping", "-n", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2", dst)
}

// Exec runs a command inside the VM's namespace.
func (v *VM) Exec(bin string, args ...string) (string, error) {
	return Run("ip", append([]string{"netns", "exec", v.NS, bin}, args...)...)
}

// TestPMDOptions describe a dpdk-testpmd "VM" on a vhost-user socket.
type TestPMDOptions struct {
	Socket string // vhost-user socket path; testpmd is the server (OVS: dpdkvhostuserclient)
	MAC    string // the virtio port's MAC
	// Forward is the forwarding mode: "" = icmpecho; "txonly" sends TxPktLen-byte UDP
	// frames (default 64) to PeerMAC as fast as it can and ignores what it receives.
	Forward  string
	TxPktLen int
	PeerMAC  string
}

// TestPMD is a running dpdk-testpmd in icmpecho mode: it answers ARP and ping for any IP.
type TestPMD struct {
	p *proc
}

// PID is testpmd's process id.
func (tp *TestPMD) PID() int { return tp.p.PID() }

// Alive reports whether testpmd is still running.
func (tp *TestPMD) Alive() bool { return tp.p.alive() }

// StartTestPMD starts dpdk-testpmd with a net_virtio_user port in server mode on
// opts.Socket, forwarding in icmpecho mode, with a small mbuf pool and its lcores on CPU 0
// (the PMD has CPU 1). It stops with SIGINT (then SIGKILL) at cleanup.
func (o *OVS) StartTestPMD(t testing.TB, opts TestPMDOptions) *TestPMD {
	t.Helper()
	if o.DPDK == nil {
		t.Fatal("lab: StartTestPMD needs a DPDK lab")
	}
	if err := os.MkdirAll(filepath.Dir(opts.Socket), 0o750); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "10", "dpdk-testpmd", "--lcores", "0@0,1@0", "-n", "1", "--no-pci",
		"--file-prefix=" + o.DPDK.filePrefix + "-vm"}
	if o.DPDK.NoHuge {
		args = append(args, "--no-huge", "-m", "256")
	} else {
		args = append(args, "--huge-dir="+o.DPDK.HugeDir, "-m", "256", "--in-memory")
	}
	vdev := "net_virtio_user0,path=" + opts.Socket + ",server=1,queues=1"
	if opts.MAC != "" {
		vdev += ",mac=" + opts.MAC
	}
	args = append(args, "--single-file-segments", "--vdev", vdev, "--",
		// Without -i and with stdin at EOF testpmd exits at once; --stats-period keeps it up.
		"--total-num-mbufs=8192", "--nb-cores=1", "--auto-start", "--stats-period=3600")
	switch opts.Forward {
	case "", "icmpecho":
		args = append(args, "--forward-mode=icmpecho")
	default:
		args = append(args, "--forward-mode="+opts.Forward)
		if opts.TxPktLen > 0 {
			args = append(args, "--txpkts="+strconv.Itoa(opts.TxPktLen))
		}
		if opts.PeerMAC != "" {
			args = append(args, "--eth-peer=0,"+opts.PeerMAC)
		}
	}
	p, err := o.spawn("testpmd", nil, "nice", args...)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	tp := &TestPMD{p: p}
	t.Cleanup(func() {
		if !p.alive() {
			return
		}
		// SIGINT lets testpmd stop its ports and free its memory.
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	// testpmd creates the socket once EAL is up; OVS connects to it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(opts.Socket); err == nil {
			return tp
		}
		if !p.alive() || time.Now().After(deadline) {
			t.Fatalf("lab: testpmd did not create %s (%s):\n%s", opts.Socket, p.state(), o.tail("testpmd.out", 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// String describes the VM for test logs.
func (v *VM) String() string { return fmt.Sprintf("%s(%s %s)", v.NS, v.IP, v.MAC) }
