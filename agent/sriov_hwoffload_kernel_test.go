//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsecurity"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/sriov"
	"github.com/offlane/offlane/test/kernellab"
	"github.com/offlane/offlane/test/lab"
)

// TestKernelAgentHWOffload: the real agent realises direct ports in OVS hw-offload mode
// on Debian's kernel. A netdevsim PF in switchdev mode with 2 VFs (configured through
// sriov), kernel OVS (system datapath) with other_config:hw-offload=true and tc-policy
// none — ovs-vswitchd in the guest's root network namespace, where the representors
// are — and the agent with DirectPorts over the real sriov manager. Two direct ports
// (binding:profile pci_slot naming VF 0 and VF 1) and a normal port on a VLAN network,
// created through the API. Read back from the real components: each representor is a
// port of br-int with external_ids iface-id and attached-mac (OVSDB), the port's
// OpenFlow flows are installed (by its cookie), the binding says vif_type ovs with the
// pci_slot and the representor, status ACTIVE; the VF's MAC is what devlink's port
// function reports, or the agent recorded why it could not set it (netdevsim has no
// port function hw_addr).
//
// Traffic: netdevsim VFs have no netdevs, so each VF is stood in for by a network
// namespace whose veth is wired to the representor the way a switchdev eswitch wires a
// VF: tc mirred puts what the VF sends into the representor's receive path (ingress
// redirect) and what OVS transmits on the representor out to the VF (egress redirect
// on the representor's clsact egress hook). A VM namespace on the normal port (plugged
// by kernel.Plugger, the `offlane vif plug` path, while the agent starts) pings both
// VFs through OVS; ovs-vswitchd then holds the datapath flows from and to each
// representor in tc (dpctl/dump-flows -m: dp:tc, with packets), on the representor's
// ingress as OVS's flower filters (tc filter show). netdevsim refuses flower offload
// ("only offload of BPF classifiers supported"), so the kernel marks those filters
// not_in_hw and OVS never reports offloaded:yes: the proof is of OVS's tc placement,
// not of NIC hardware.
//
// Deleting the first port unplugs its representor from OVS and removes its OpenFlow
// and datapath flows (and OVS's tc filters on it); the second stays plugged, ACTIVE,
// and still answers pings; the agent's tc applier, which prunes offlane's rules on
// every representor in each reconcile, read the representors holding OVS's filters
// and touched none of them.
func TestKernelAgentHWOffload(t *testing.T) {
	kernellab.RequireGuest(t)
	lab.RequireOVS(t)
	lab.Require(t, "tc", "ping", "devlink")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := lab.Logger(t)
	start := time.Now()
	step := func(what string) { t.Logf("%5.1fs %s", time.Since(start).Seconds(), what) }

	// the NIC: netdevsim 61 in switchdev mode with 2 VFs, configured through the sriov
	// manager the agent uses (as `offlane serve --agent` wires it: no hwdetect inventory
	// behind the registry it rebuilds on every reconcile)
	nl, err := sriov.NewNetlinkLinks()
	if err != nil {
		t.Fatal(err)
	}
	dm, err := sriov.New(sriov.Config{SysFS: sriov.DirFS{Root: "/"}, Devlink: sriov.NetlinkDevlink{}, Links: nl, Ethtool: &sriov.IoctlEthtool{}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	nsim := kernellab.NewNetdevsim(t, 61, 1)
	if _, err := dm.Configure(ctx, sriov.Spec{PF: nsim.Handle, NumVFs: 2, Mode: sriov.ModeSwitchdev}, false); err != nil {
		t.Fatal(err)
	}
	rep := vfRepresentors(t, ctx, dm, nsim.Handle)
	slot := func(vf int) string { return fmt.Sprintf("%s/vf%d", nsim.Handle, vf) }
	macs := map[int]string{0: "fa:16:3e:00:02:10", 1: "fa:16:3e:00:02:11"}
	ips := map[int]string{0: "10.0.0.10", 1: "10.0.0.11"}
	// the VFs' stand-ins, wired before OVS opens the representors (see vfStandIns)
	vfStandIns(t, kernel.NewPlugger(kernel.PlugOptions{}), rep, macs,
		map[int]netip.Prefix{0: netip.MustParsePrefix(ips[0] + "/24"), 1: netip.MustParsePrefix(ips[1] + "/24")})
	step("netdevsim in switchdev with 2 VFs, VF stand-ins wired")

	// the tenant side, through the API (no port security: the pings' datapath flows are
	// plain L2, which OVS's tc offload takes); the agent starts on it below
	srv, err := controlplane.NewServer(ctx, controlplane.ServerConfig{DataDir: t.TempDir(), Logger: log.Named("api")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); _ = srv.Close() })
	nc := &gophercloud.ServiceClient{ProviderClient: &gophercloud.ProviderClient{HTTPClient: *hs.Client()}, Endpoint: hs.URL + "/",
		ResourceBase: hs.URL + "/v2.0/", MoreHeaders: map[string]string{"X-Project-Id": "proj-a"}}
	net := must(networks.Create(ctx, nc, provider.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "vlan100"},
		Segments: []provider.Segment{{NetworkType: "vlan", PhysicalNetwork: "physnet1", SegmentationID: 100}}}).Extract()).get(t, "network")
	must(subnets.Create(ctx, nc, subnets.CreateOpts{NetworkID: net.ID, CIDR: "10.0.0.0/24", IPVersion: gophercloud.IPv4}).Extract()).get(t, "subnet")
	noSec := false
	create := func(name, vnic, mac, ip string, profile map[string]any) string {
		t.Helper()
		p := must(ports.Create(ctx, nc, portsbinding.CreateOptsExt{
			CreateOptsBuilder: portsecurity.PortCreateOptsExt{CreateOptsBuilder: ports.CreateOpts{Name: name, NetworkID: net.ID, MACAddress: mac,
				FixedIPs: []ports.IP{{IPAddress: ip}}}, PortSecurityEnabled: &noSec},
			HostID: host, VNICType: vnic, Profile: profile}).Extract()).get(t, "port "+name)
		return p.ID
	}
	hw := map[int]string{}
	for vf := range 2 {
		hw[vf] = create(fmt.Sprintf("hw%d", vf), controlplane.VNICDirect, macs[vf], ips[vf], map[string]any{"pci_slot": slot(vf)})
	}
	const vmMAC, vmIP = "fa:16:3e:00:02:05", "10.0.0.5"
	vmPort := create("vm", controlplane.VNICNormal, vmMAC, vmIP, nil)
	step("API: network, subnet, 3 ports")

	// OVS: kernel datapath, hw-offload preset (ovs-vswitchd reads it at start), and
	// ovs-vswitchd in the root namespace with the representors
	o := lab.StartOVS(t, lab.Options{DBOnly: true, SystemDatapath: true,
		OtherConfig: map[string]string{"hw-offload": "true", "tc-policy": "none"}})
	startRootVswitchd(t, o)
	step("ovsdb-server and ovs-vswitchd (root namespace) up")

	// the tc applier too, as serve wires it: it prunes offlane's own rules on every
	// representor and must leave OVS's alone; no periodic resync during the test: each
	// full one costs seconds under qemu's TCG
	da := startDirectAgent(t, o, "datapath: system\nhw_offload: true\ntc_policy: none\nintegration_bridge: br-int\nphysnets:\n  physnet1: {bridge: br-phys1}\n",
		dm, srv, 10*time.Minute)
	ag, direct, ovsPorts, of := da.ag, da.direct, da.ports, da.of
	// the VM, plugged as a hypervisor plugs a normal port, as soon as the agent has
	// made br-int
	const vm = "olhw-vm"
	plugNamespace(t, kernel.NewPlugger(kernel.PlugOptions{Switch: ovsPorts}), kernel.PlugSpec{Namespace: vm, IfName: "eth0", HostIfName: "olhwvm",
		MAC: vmMAC, Addrs: []netip.Prefix{netip.MustParsePrefix(vmIP + "/24")}, IfaceID: vmPort}, time.Minute)
	step("agent started, VM plugged")

	// the bindings, as the hypervisor reads them
	e := &env{t: t, nc: nc}
	for vf, id := range hw {
		// the agent's first reconcile lays out the node (bridges on the kernel datapath):
		// slow under TCG
		var p boundPort
		eventually(t, "port hw"+strconv.Itoa(vf)+" ACTIVE", time.Minute, func() bool {
			p = e.getPort(id)
			return p.Status == controlplane.PortStatusActive
		})
		d := p.VIFDetails
		if p.VIFType != agent.VIFTypeOVS || d["pci_slot"] != slot(vf) || d["representor"] != rep[vf] || d["bridge_name"] != "br-int" ||
			d["datapath_type"] != "system" || d["physical_network"] != "physnet1" {
			t.Errorf("port hw%d binding: vif_type %s, vif_details %v (want ovs, pci_slot %s, representor %s, br-int, system, physnet1)",
				vf, p.VIFType, d, slot(vf), rep[vf])
		}
		// the VF's MAC: what devlink's port function holds, or why the agent could not
		// set it
		fnMAC := portFunctionMAC(t, rep[vf])
		note, _ := d["vf_mac_note"].(string)
		switch {
		case fnMAC == macs[vf] && note != "":
			t.Errorf("port hw%d: VF MAC set (devlink: %s) yet noted %q", vf, fnMAC, note)
		case fnMAC != macs[vf] && !strings.Contains(note, "hw_addr"):
			t.Errorf("port hw%d: VF MAC is %q per devlink, not the port's %s, and the binding has no reason naming hw_addr: %q", vf, fnMAC, macs[vf], note)
		}
		t.Logf("hw%d: representor %s, VF MAC per devlink %q, vf_mac_note %q", vf, rep[vf], fnMAC, note)
		st, ok := direct.Status(id)
		if !ok || st.Backend != offload.BackendOpenFlow || st.Representor != rep[vf] {
			t.Errorf("direct status of hw%d: %+v", vf, st)
		}
		if dec := planL2(t, ag.Last().Plan, id); !strings.Contains(dec.Reason, "OVS hw-offload=true") {
			t.Errorf("hw%d's l2 decision %+v: want the OVS hw-offload reason", vf, dec)
		}
	}

	step("direct ports ACTIVE, bindings read")

	// OVSDB: the representors on br-int with iface-id and attached-mac
	for vf, id := range hw {
		checkRepPlugged(t, o, rep[vf], id, macs[vf])
		if n := portFlows(t, of, id); n == 0 {
			t.Errorf("port hw%d: no OpenFlow flows with its cookie %#x on br-int", vf, offload.CookieFor(offload.KindPort, id))
		}
	}

	// the VM (plugged while the agent started)
	e.waitStatus(vmPort, controlplane.PortStatusActive)
	step("VM ACTIVE")
	for vf := range 2 {
		nsPing(t, vm, ips[vf], 20*time.Second)
	}
	// once more: these pings hit the datapath flows the first ones installed
	for vf := range 2 {
		if out, err := nsPingOnce(vm, ips[vf], "-c", "3", "-i", "0.2"); err != nil {
			t.Fatalf("VM → VF %d (%s): %v\n%s", vf, ips[vf], err, out)
		}
	}
	step("VM pinged both VFs")
	uc := ovsdpdk.NewUnixctl(ovsdpdk.UnixctlOptions{RunDir: o.Dir})
	flows, err := uc.DatapathFlows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := o.Appctl("dpctl/dump-flows", "-m")
	t.Logf("dpctl/dump-flows -m:\n%s", raw)
	for vf := range 2 {
		var from, to int
		var pkts uint64
		for _, f := range flows {
			switch {
			case f.InPort == rep[vf] && f.InTC():
				from++
				pkts += f.Packets
			case f.InPort != rep[vf] && f.Touches(rep[vf]) && f.InTC():
				to++
			}
			if f.Touches(rep[vf]) && f.InHW() {
				t.Errorf("datapath flow %s reported in hardware on netdevsim (which refuses flower offload)", f.Match)
			}
		}
		if from == 0 || to == 0 || pkts == 0 {
			t.Errorf("representor %s: %d datapath flows from it in tc (%d packets), %d to it: want both, with packets", rep[vf], from, pkts, to)
		}
	}
	// the kernel's view: OVS's flower filters on the representor's ingress, in software
	tcOut := tcFilters(t, rep[0], "ingress")
	if !strings.Contains(tcOut, "flower") || !strings.Contains(tcOut, "olhwvm") || !strings.Contains(tcOut, "not_in_hw") {
		t.Errorf("tc filter show dev %s ingress: want OVS's flower filters redirecting to olhwvm, not_in_hw:\n%s", rep[0], tcOut)
	}
	t.Logf("tc -s filter show dev %s ingress:\n%s", rep[0], tcOut)

	step("datapath flows read")

	// delete hw0: its representor leaves OVS with its flows; hw1 stays and forwards
	if err := ports.Delete(ctx, nc, hw[0]).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	eventuallyWhy(t, "hw0's representor unplugged and its flows gone", 20*time.Second, func() (bool, string) {
		rows, err := o.Select("Interface", []any{[]any{"name", "==", rep[0]}}, "name")
		if err != nil {
			return false, err.Error()
		}
		if len(rows) > 0 {
			return false, rep[0] + " is still an OVS interface"
		}
		if n := portFlows(t, of, hw[0]); n > 0 {
			return false, fmt.Sprintf("%d OpenFlow flows with hw0's cookie", n)
		}
		fl, err := uc.DatapathFlows(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, f := range fl {
			if f.Touches(rep[0]) {
				return false, "datapath flow still touches " + rep[0] + ": " + f.Match
			}
		}
		return true, ""
	})
	if out := tcFilters(t, rep[0], "ingress"); strings.Contains(out, "flower") {
		t.Errorf("OVS's flower filters left on the unplugged representor %s:\n%s", rep[0], out)
	}
	if _, ok := direct.Status(hw[0]); ok {
		t.Errorf("the deleted port hw0 is still in the agent's direct state")
	}
	checkRepPlugged(t, o, rep[1], hw[1], macs[1])
	if n := portFlows(t, of, hw[1]); n == 0 {
		t.Errorf("hw1's flows went with hw0's")
	}
	e.waitStatus(hw[1], controlplane.PortStatusActive)
	if out, err := nsPingOnce(vm, ips[1], "-c", "2", "-i", "0.2"); err != nil {
		t.Errorf("VM → VF 1 after deleting hw0: %v\n%s", err, out)
	}
	// the tc applier's pass over the representors in that reconcile (no tc port: a
	// prune only) read them, OVS's flower filters included, and found no rule of
	// offlane's
	if _, rp := direct.LastTC(); rp == nil || len(rp.Filters) != 0 || rp.Added != 0 || rp.Deleted != 0 {
		t.Errorf("tc applier on the representors: report %+v, want a pass that found, added and deleted no offlane rule", rp)
	}
	step("hw0 deleted, hw1 still forwards")
}

// startRootVswitchd starts ovs-vswitchd for o's database in the root network namespace
// (test/lab runs it in a namespace of its own; the netdevsim representors live in the
// root one) with its control socket where o.Appctl looks, and stops it in t.Cleanup
// (exit --cleanup: its datapath and internal ports go; then SIGKILL by PID).
func startRootVswitchd(t *testing.T, o *lab.OVS) {
	t.Helper()
	ctl := filepath.Join(o.Dir, "ovs-vswitchd.ctl")
	out, err := os.Create(filepath.Join(o.Dir, "ovs-vswitchd.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(lab.VswitchdBin, o.Endpoint, "--unixctl="+ctl, "--log-file="+filepath.Join(o.Dir, "ovs-vswitchd.log"),
		"--no-chdir", "-vconsole:off")
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = o.Env(), o.Dir, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		t.Fatalf("start ovs-vswitchd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = out.Close(); close(exited) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ovs-vswitchd.log:\n%s", o.Tail("ovs-vswitchd.log", 60))
		}
		_, _ = o.Appctl("exit", "--cleanup")
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ctl); err == nil {
			if _, err := o.Appctl("version"); err == nil {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("ovs-vswitchd exited:\n%s", o.Tail("ovs-vswitchd.log", 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ovs-vswitchd did not come up:\n%s", o.Tail("ovs-vswitchd.log", 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vfStandIns stand in for the VFs behind the representors reps: per VF a namespace
// olhw-vf<i> with eth0 (the VF's MAC and address) whose veth peer olhwvf<i> is wired to
// the representor as the eswitch wires a VF: what eth0 sends enters the representor's
// receive path (mirred ingress redirect), what is transmitted on the representor goes to
// eth0 (mirred egress redirect on its clsact egress hook). The clsact is there before
// OVS opens the representor: OVS then keeps it (adding its ingress qdisc finds it:
// EEXIST) and puts its flower filters on its ingress hook.
func vfStandIns(t *testing.T, pl *kernel.Plugger, reps, macs map[int]string, addrs map[int]netip.Prefix) {
	t.Helper()
	var batch strings.Builder
	for vf, rep := range reps {
		ns, host := fmt.Sprintf("olhw-vf%d", vf), fmt.Sprintf("olhwvf%d", vf)
		plugNamespace(t, pl, kernel.PlugSpec{Namespace: ns, IfName: "eth0", HostIfName: host, MAC: macs[vf], Addrs: []netip.Prefix{addrs[vf]}}, 0)
		fmt.Fprintf(&batch, "qdisc add dev %[1]s clsact\nfilter add dev %[1]s ingress matchall action mirred ingress redirect dev %[2]s\n"+
			"qdisc add dev %[2]s clsact\nfilter add dev %[2]s egress matchall action mirred egress redirect dev %[1]s\n", host, rep)
		t.Cleanup(func() { _ = exec.Command("tc", "qdisc", "del", "dev", rep, "clsact").Run() })
	}
	cmd := exec.Command("tc", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tc -batch: %v\n%s\n%s", err, out, batch.String())
	}
}

// plugNamespace plugs a namespace port (kernel.Plugger, the `offlane vif plug` path),
// retrying for up to retry (the switch's bridge may not exist yet), and removes it and
// its namespace in t.Cleanup.
func plugNamespace(t *testing.T, pl *kernel.Plugger, spec kernel.PlugSpec, retry time.Duration) {
	t.Helper()
	t.Cleanup(func() {
		if err := pl.Unplug(context.Background(), spec.Namespace, spec.IfName, spec.HostIfName); err != nil {
			t.Errorf("unplug %s: %v", spec.Namespace, err)
		}
		if err := pl.DeleteNamespace(spec.Namespace); err != nil {
			t.Errorf("delete namespace %s: %v", spec.Namespace, err)
		}
	})
	for deadline := time.Now().Add(retry); ; time.Sleep(200 * time.Millisecond) {
		_, err := pl.Plug(context.Background(), spec)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func nsPingOnce(ns, dst string, args ...string) (string, error) {
	a := append([]string{"netns", "exec", ns, "ping", "-n", "-W", "1"}, args...)
	out, err := exec.Command("ip", append(a, dst)...).CombinedOutput()
	return string(out), err
}

func nsPing(t *testing.T, ns, dst string, d time.Duration) {
	t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(d); ; {
		if out, err = nsPingOnce(ns, dst, "-c", "1"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping %s from %s: %v\n%s", dst, ns, err, out)
		}
	}
}

// checkRepPlugged reads OVSDB (ovsdb-client, not the code under test): rep is an
// interface of a port of br-int with external_ids iface-id and attached-mac.
func checkRepPlugged(t *testing.T, o *lab.OVS, rep, portID, mac string) {
	t.Helper()
	rows, err := o.Select("Interface", []any{[]any{"name", "==", rep}}, "_uuid", "external_ids", "ofport", "link_state")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Errorf("representor %s: %d OVS interfaces", rep, len(rows))
		return
	}
	ext := fmt.Sprint(rows[0]["external_ids"])
	if !strings.Contains(ext, `iface-id `+portID+`]`) || !strings.Contains(ext, `attached-mac `+mac+`]`) {
		t.Errorf("representor %s external_ids %s: want iface-id %s and attached-mac %s", rep, ext, portID, mac)
	}
	if fmt.Sprint(rows[0]["link_state"]) != "up" {
		t.Errorf("representor %s link_state %v, want up", rep, rows[0]["link_state"])
	}
	uuid := fmt.Sprint(rows[0]["_uuid"].([]any)[1])
	br, err := o.Select("Bridge", []any{[]any{"name", "==", "br-int"}}, "ports")
	if err != nil || len(br) != 1 {
		t.Fatalf("br-int: %v %v", br, err)
	}
	ps, err := o.Select("Port", []any{[]any{"name", "==", rep}}, "_uuid", "interfaces")
	if err != nil || len(ps) != 1 || !strings.Contains(fmt.Sprint(ps[0]["interfaces"]), uuid) ||
		!strings.Contains(fmt.Sprint(br[0]["ports"]), fmt.Sprint(ps[0]["_uuid"].([]any)[1])) {
		t.Errorf("representor %s is not a port of br-int: port %v, bridge ports %v (%v)", rep, ps, br, err)
	}
}

// portFlows counts the OpenFlow flows on br-int with the port's cookie.
func portFlows(t *testing.T, of *ovsdpdk.Ofctl, id string) int {
	t.Helper()
	fl, err := of.DumpFlows(context.Background(), "br-int", offload.CookieFor(offload.KindPort, id), ^uint64(0), false)
	if err != nil {
		t.Fatal(err)
	}
	return len(fl)
}

// portFunctionMAC is the hw_addr of the VF behind representor rep as devlink reports
// its port function ("" when the driver reports none).
func portFunctionMAC(t *testing.T, rep string) string {
	t.Helper()
	out := sh(t, "devlink", "port", "show", rep)
	if _, after, ok := strings.Cut(out, "hw_addr "); ok {
		return strings.Fields(after)[0]
	}
	return ""
}

func tcFilters(t *testing.T, dev, hook string) string {
	t.Helper()
	return sh(t, "tc", "-s", "filter", "show", "dev", dev, hook)
}
