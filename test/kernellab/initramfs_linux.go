//go:build linux

package kernellab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// labModules are in the guest for the tests; the kernel loads them on demand through
// /sbin/modprobe (tc classifiers and actions, link kinds, the openvswitch genetlink
// family, nftables expressions), or a test runs modprobe. Later tests add what they need
// here: the initramfs is rebuilt when this list changes.
var labModules = []string{
	// switchdev + tc flower datapath
	"cls_flower", "cls_matchall", "cls_u32", "cls_bpf", "sch_ingress", "sch_htb", "sch_tbf", "ifb",
	"act_mirred", "act_gact", "act_vlan", "act_tunnel_key", "act_pedit", "act_csum", "act_ct",
	"act_police", "act_skbedit",
	// kernel OVS datapath
	"openvswitch", "vport_vxlan", "vport_geneve",
	// links
	"8021q", "vxlan", "geneve", "bridge", "veth", "dummy", "tun", "psample",
	// netfilter fallback (NAT and security groups in namespaces)
	"nf_tables", "nft_ct", "nft_nat", "nft_chain_nat", "nft_masq", "nft_reject_inet", "nft_fib_inet",
	"nf_conntrack", "nf_nat", "nf_conntrack_netlink", // ovs-appctl dpctl/dump-conntrack
	// vishvananda/netlink's NewHandleAt opens a NETLINK_XFRM socket too (the kernel
	// package's namespace handles): without xfrm_user, "protocol not supported"
	"xfrm_user",
	// libcrc32c (openvswitch, act_csum, nf_nat) fails its init with ENOENT without a
	// crc32c implementation: its "softdep pre: crc32c"
	"crc32c_generic",
}

// guestTool is a host program copied into the guest with its shared libraries.
type guestTool struct {
	path     string // host path (a bare name is looked up in PATH)
	dest     string // guest path, "" = same as the host's
	optional bool   // skipped (and logged) when the host lacks it
}

// guestTools: busybox provides the shell and coreutils; iproute2, ethtool and kmod are
// the real tools tests compare against; OVS userspace, tcpdump and nft are for the
// tc/OVS/netfilter guest tests.
var guestTools = []guestTool{
	{path: "busybox"},
	{path: "ip"}, {path: "tc"}, {path: "devlink"}, {path: "bridge"}, {path: "ethtool"},
	{path: "/usr/sbin/modprobe"}, {path: "/usr/sbin/insmod"}, {path: "/usr/sbin/rmmod"}, {path: "/usr/sbin/lsmod"},
	// ovs-vswitchd at the host's path too: test/lab (StartOVS) runs it from there
	{path: "/usr/lib/openvswitch-switch/ovs-vswitchd", optional: true},
	{path: "ovsdb-server", optional: true}, {path: "ovsdb-tool", optional: true}, {path: "ovs-vsctl", optional: true},
	{path: "ovsdb-client", optional: true},
	{path: "ovs-appctl", optional: true}, {path: "ovs-ofctl", optional: true}, {path: "ovs-dpctl", optional: true},
	{path: "/usr/share/openvswitch/vswitch.ovsschema", optional: true},
	{path: "tcpdump", optional: true}, {path: "nft", optional: true},
	{path: "iperf3", optional: true}, // police rates measured in the guest
	// iputils ping before busybox's in PATH: the e2e scenarios read its summary
	// ("0 received") and use its -i 0.2
	{path: "ping", optional: true},
}

// guestEtc are small host files the tools expect.
var guestEtc = []string{"/etc/protocols", "/etc/services", "/etc/ethertypes"}

// initramfs builds (or finds in the cache) the guest's initramfs for kernel k and
// returns its path. The archive's name is the hash of everything in it, so a change of
// a host tool, the module lists, /init or netdevsim.ko makes a new one.
func initramfs(ctx context.Context, k *kernel, logf func(string, ...any)) (string, error) {
	t := newTree()
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "root", "mnt/lab", "mnt/src", "var/run", "var/log", "etc"} {
		t.dir(d)
	}
	t.charDev("dev/console", 0o600, 5, 1)
	t.file("init", 0o755, []byte(guestInit(bootModules)))
	// tcpdump (Debian's build) drops its privileges to the user tcpdump once capturing.
	t.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\ntcpdump:x:104:110::/nonexistent:/bin/false\n"))
	t.file("etc/group", 0o644, []byte("root:x:0:\ntcpdump:x:110:\n"))
	t.file("etc/hostname", 0o644, []byte("offlane-kernellab\n"))
	hc := newHostCopier("/", t)
	// usrmerge: /bin, /sbin, /lib, /lib64 are symlinks into /usr on the host; keep them so
	// paths such as /sbin/modprobe and /lib/modules work in the guest too.
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib64"} {
		if fi, err := os.Lstat(d); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if _, err := hc.walk(d); err != nil {
				return "", err
			}
		}
	}
	var skipped []string
	for _, tool := range guestTools {
		p := tool.path
		if !strings.HasPrefix(p, "/") {
			lp, err := exec.LookPath(p)
			if err != nil {
				if tool.optional {
					skipped = append(skipped, p)
					continue
				}
				return "", fmt.Errorf("guest tool %s not found on the host: run deploy/install-deps.sh", p)
			}
			p = lp
		} else if _, err := os.Stat(p); err != nil {
			if tool.optional {
				skipped = append(skipped, p)
				continue
			}
			return "", fmt.Errorf("guest tool %s: %w (run deploy/install-deps.sh)", p, err)
		}
		if err := hc.addBinary(p, tool.dest); err != nil {
			return "", fmt.Errorf("guest tool %s: %w", p, err)
		}
	}
	if len(skipped) > 0 {
		logf("initramfs: optional tools missing on the host, not in the guest: %s", strings.Join(skipped, " "))
	}
	for _, f := range guestEtc {
		if _, err := os.Stat(f); err == nil {
			if _, err := hc.add(f); err != nil {
				return "", err
			}
		}
	}

	// Kernel modules: the closure of the two lists in the kernel's modules.dep, plus
	// netdevsim.ko as an external module; depmod then indexes the guest's set.
	staging, err := os.MkdirTemp(k.dir, ".modules-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(staging)
	if err := stageModules(ctx, k, staging); err != nil {
		return "", err
	}
	guestMods := "usr/lib/modules/" + k.ref.ABI
	err = filepath.WalkDir(filepath.Join(staging, "lib", "modules", k.ref.ABI), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(filepath.Join(staging, "lib", "modules", k.ref.ABI), p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p) // small (modules and indexes) and the staging dir is deleted
		if err != nil {
			return err
		}
		t.file(path.Join(guestMods, filepath.ToSlash(rel)), 0o644, b)
		return nil
	})
	if err != nil {
		return "", err
	}

	sum, err := t.hash()
	if err != nil {
		return "", err
	}
	// Uncompressed: the kernel unpacks it in half the time of gzip under emulation.
	out := filepath.Join(k.dir, "initramfs-"+sum[:16]+".cpio")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	werr := t.writeCpio(f, openHost)
	err = errors.Join(werr, f.Close())
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("write initramfs: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	if fi, err := os.Stat(out); err == nil {
		logf("initramfs: built %s (%d entries, %.1f MB)", filepath.Base(out), len(t.entries), float64(fi.Size())/1e6)
	}
	return out, nil
}

// stageModules copies the needed modules of k into staging/lib/modules/<abi> and runs
// depmod there.
func stageModules(ctx context.Context, k *kernel, staging string) error {
	depf, err := os.Open(filepath.Join(k.modDir, "modules.dep"))
	if err != nil {
		return err
	}
	mi, err := parseModulesDep(depf)
	_ = depf.Close()
	if err != nil {
		return err
	}
	if bf, err := os.Open(filepath.Join(k.modDir, "modules.builtin")); err == nil {
		err = mi.addBuiltin(bf)
		_ = bf.Close()
		if err != nil {
			return err
		}
	}
	var want []string
	for _, m := range append(append([]string{}, bootModules...), labModules...) {
		if m != "netdevsim" {
			want = append(want, m)
		}
	}
	// netdevsim's own dependencies (psample, …) come from its modinfo.
	deps, err := exec.CommandContext(ctx, "modinfo", "-F", "depends", k.netdevsim).Output()
	if err != nil {
		return fmt.Errorf("modinfo %s: %w", k.netdevsim, err)
	}
	for _, d := range strings.Split(strings.TrimSpace(string(deps)), ",") {
		if d != "" {
			want = append(want, d)
		}
	}
	files, err := mi.closure(want)
	if err != nil {
		return err
	}
	dst := filepath.Join(staging, "lib", "modules", k.ref.ABI)
	copyTo := func(src, rel string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		p := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}
	for _, f := range files {
		if err := copyTo(filepath.Join(k.modDir, f), f); err != nil {
			return err
		}
	}
	if err := copyTo(k.netdevsim, "extra/netdevsim.ko"); err != nil {
		return err
	}
	for _, f := range []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"} {
		if _, err := os.Stat(filepath.Join(k.modDir, f)); err == nil {
			if err := copyTo(filepath.Join(k.modDir, f), f); err != nil {
				return err
			}
		}
	}
	if out, err := exec.CommandContext(ctx, "depmod", "-b", staging, k.ref.ABI).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod for the guest: %w: %s", err, out)
	}
	return nil
}
