package ovsdpdk

import (
	"fmt"
	"strings"
	"testing"
)

// dumpLayout writes a layout as text, one row per line, for comparison.
func dumpLayout(l *Layout) string {
	var b strings.Builder
	for _, k := range sortedKeys(l.OtherConfig) {
		fmt.Fprintf(&b, "other_config %s=%s\n", k, l.OtherConfig[k])
	}
	for _, k := range sortedKeys(l.ExternalIDs) {
		fmt.Fprintf(&b, "external_ids %s=%s\n", k, l.ExternalIDs[k])
	}
	for _, br := range l.Bridges {
		fmt.Fprintf(&b, "bridge %s %s %s %s\n", br.Name, br.DatapathType, br.FailMode, fmtMap("", br.ExternalIDs))
		for _, p := range br.Ports {
			fmt.Fprintf(&b, "  port %s type=%q %s %s\n", p.Name, p.Type, fmtMap("", p.Options), fmtMap("", p.ExternalIDs))
		}
	}
	return b.String()
}

func TestNodeLayoutExample(t *testing.T) {
	spec, err := Resolve(parse(t, exampleYAML), twoNUMA())
	if err != nil {
		t.Fatal(err)
	}
	got := dumpLayout(NodeLayout(spec))
	want := `other_config dpdk-init=true
other_config dpdk-lcore-mask=0x10
other_config dpdk-socket-mem=0,600
other_config hw-offload=false
other_config pmd-cpu-mask=0xc0
other_config userspace-tso-enable=true
external_ids offlane-bridge-mappings=physnet1:br-phys1
external_ids offlane-integration-bridge=br-int
external_ids offlane-tunnel-local-ip=10.99.0.1
external_ids offlane-vhostuser-socket-dir=/var/run/offlane/vhu
bridge br-ex netdev secure {offlane-owner=node offlane-role=external}
  port br-ex type="internal" {} {offlane-owner=node offlane-role=local}
  port phy-br-ex type="patch" {peer=int-br-ex} {offlane-owner=node offlane-role=patch}
bridge br-int netdev standalone {offlane-owner=node offlane-role=integration}
  port br-int type="internal" {} {offlane-owner=node offlane-role=local}
  port int-br-ex type="patch" {peer=phy-br-ex} {offlane-owner=node offlane-role=patch}
  port int-br-phys1 type="patch" {peer=phy-br-phys1} {offlane-owner=node offlane-role=patch}
  port patch-tun type="patch" {peer=patch-int} {offlane-owner=node offlane-role=patch}
bridge br-phys1 netdev secure {offlane-owner=node offlane-physnet=physnet1 offlane-role=physnet}
  port br-phys1 type="internal" {} {offlane-owner=node offlane-role=local}
  port eth1 type="" {} {offlane-owner=node offlane-physnet=physnet1 offlane-role=uplink}
  port phy-br-phys1 type="patch" {peer=int-br-phys1} {offlane-owner=node offlane-role=patch}
bridge br-tun netdev secure {offlane-owner=node offlane-role=tunnel}
  port br-tun type="internal" {} {offlane-owner=node offlane-role=local}
  port patch-int type="patch" {peer=patch-tun} {offlane-owner=node offlane-role=patch}
  port tun-vxlan type="vxlan" {key=flow local_ip=10.99.0.1 remote_ip=flow tos=inherit} {offlane-owner=node offlane-role=tunnel-port}
`
	if got != want {
		t.Errorf("layout:\n%s\nwant:\n%s", got, want)
	}
}

func TestNodeLayoutDPDKUplink(t *testing.T) {
	spec, err := Resolve(parse(t, `
datapath: netdev
dpdk: {enabled: true, pmd_cpus: "2", lcore_cpus: "0", extra: "--no-pci", hugepage_dir: /dev/hugepages, pmd_maxsleep: 50}
physnets: {phys: {bridge: br-p, interface: dpdk0, devargs: "0000:81:00.0"}}
`), twoNUMA())
	if err != nil {
		t.Fatal(err)
	}
	got := dumpLayout(NodeLayout(spec))
	for _, w := range []string{
		"other_config dpdk-extra=--no-pci\n", "other_config dpdk-hugepage-dir=/dev/hugepages\n",
		"other_config pmd-maxsleep=50\n", "other_config pmd-cpu-mask=0x4\n", "other_config dpdk-lcore-mask=0x1\n",
		`port dpdk0 type="dpdk" {dpdk-devargs=0000:81:00.0}`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("layout lacks %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "dpdk-socket-mem") {
		t.Error("socket_mem not given but set")
	}
}
