package ovsdpdk

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/offlane/offlane/hwdetect"
)

// twoNUMA is a captured-looking node: 8 CPUs on two NUMA nodes, CPUs 2,3 (node 0) and
// 6,7 (node 1) isolated, eth1 on node 1, 2M hugepages free on both nodes.
func twoNUMA() *hwdetect.Node {
	return &hwdetect.Node{
		CPUs: hwdetect.CPUs{
			Online:   []int{0, 1, 2, 3, 4, 5, 6, 7},
			Isolated: []int{2, 3, 6, 7},
			NUMA: []hwdetect.NUMANode{
				{ID: 0, CPUs: []int{0, 1, 2, 3}, Isolated: []int{2, 3}},
				{ID: 1, CPUs: []int{4, 5, 6, 7}, Isolated: []int{6, 7}},
			},
		},
		Hugepages: []hwdetect.HugepageSize{{SizeKB: 2048, Total: 2048, Free: 2048,
			NUMA: []hwdetect.HugepageCount{{Node: 0, Total: 1024, Free: 1024}, {Node: 1, Total: 1024, Free: 300}}}},
		NICs: []hwdetect.NIC{{Name: "eth0", NUMANode: 0}, {Name: "eth1", NUMANode: 1, PCIAddress: "0000:81:00.0"}},
	}
}

func parse(t *testing.T, y string) *NodeConfig {
	t.Helper()
	cfg, err := ParseNodeConfig("node.yaml", strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestResolveAuto(t *testing.T) {
	spec, err := Resolve(parse(t, exampleYAML), twoNUMA())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(spec.PMDCPUs, []int{6, 7}) || !reflect.DeepEqual(spec.LcoreCPUs, []int{4}) || !reflect.DeepEqual(spec.SocketMem, []int{0, 600}) {
		t.Fatalf("pmd %v lcore %v socket_mem %v", spec.PMDCPUs, spec.LcoreCPUs, spec.SocketMem)
	}
	d := strings.Join(spec.Derivations, "\n")
	for _, w := range []string{
		"dpdk.pmd_cpus: auto → 6-7: the isolated CPUs on NUMA node(s) [1] (uplinks: eth1 on node 1)",
		"dpdk.lcore_cpus: auto → 4:",
		"dpdk.socket_mem: auto → [0, 600]",
	} {
		if !strings.Contains(d, w) {
			t.Errorf("derivations lack %q:\n%s", w, d)
		}
	}
	l := NodeLayout(spec)
	want := map[string]string{"dpdk-init": "true", "dpdk-socket-mem": "0,600", "pmd-cpu-mask": "0xc0",
		"dpdk-lcore-mask": "0x10", "hw-offload": "false", "userspace-tso-enable": "true"}
	if !reflect.DeepEqual(l.OtherConfig, want) {
		t.Errorf("other_config %v, want %v", l.OtherConfig, want)
	}
}

func TestResolveAutoWithoutIsolationOrHugepages(t *testing.T) {
	hw := &hwdetect.Node{CPUs: hwdetect.CPUs{Online: []int{0, 1}, NUMA: []hwdetect.NUMANode{{ID: 0, CPUs: []int{0, 1}}}},
		Hugepages: []hwdetect.HugepageSize{{SizeKB: 2048, NUMA: []hwdetect.HugepageCount{{Node: 0}}}}}
	spec, err := Resolve(parse(t, "datapath: netdev\ndpdk: {enabled: true, socket_mem: auto, pmd_cpus: auto, lcore_cpus: auto}\n"), hw)
	if err != nil {
		t.Fatal(err)
	}
	if spec.PMDCPUs != nil || spec.SocketMem != nil || !reflect.DeepEqual(spec.LcoreCPUs, []int{0}) {
		t.Fatalf("pmd %v socket_mem %v lcore %v", spec.PMDCPUs, spec.SocketMem, spec.LcoreCPUs)
	}
	d := strings.Join(spec.Derivations, "\n")
	for _, w := range []string{"pmd_cpus: auto → not set: no isolated CPUs", "no physnet uplink among the detected NICs",
		"socket_mem: auto → not set: no free hugepages"} {
		if !strings.Contains(d, w) {
			t.Errorf("derivations lack %q:\n%s", w, d)
		}
	}
	l := NodeLayout(spec)
	if _, ok := l.OtherConfig["pmd-cpu-mask"]; ok {
		t.Error("pmd-cpu-mask set without PMD CPUs")
	}
}

func TestResolveRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // key and fix in the message
	}{
		{"dpdk on system datapath", "datapath: system\ndpdk: {enabled: true, pmd_cpus: \"1\"}\n",
			[]string{"dpdk.enabled: DPDK needs the userspace datapath: set datapath: netdev"}},
		{"bad tunnel ip", "tunnel: {local_ip: 10.99.0.300/24, types: [vxlan]}\n",
			[]string{`tunnel.local_ip: "10.99.0.300/24" is not an IP address or CIDR`, "e.g. 10.99.0.1"}},
		{"bad prefix", "tunnel: {local_ip: 10.99.0.1/33, types: [vxlan]}\n", []string{"tunnel.local_ip"}},
		{"tunnel without types", "tunnel: {local_ip: 10.99.0.1}\n", []string{"tunnel.types: missing"}},
		{"bad tunnel type", "tunnel: {local_ip: 10.99.0.1, types: [vxlan, stt]}\n", []string{`tunnel.types: "stt" is not a tunnel type: use vxlan, geneve or gre`}},
		{"pmd cpu missing", "datapath: netdev\ndpdk: {enabled: true, pmd_cpus: \"2,9\"}\n",
			[]string{"dpdk.pmd_cpus: CPU 9 does not exist or is offline (online: 0-7): list online CPUs or write auto"}},
		{"lcore cpu missing", "datapath: netdev\ndpdk: {enabled: true, lcore_cpus: \"12\"}\n", []string{"dpdk.lcore_cpus: CPU 12 does not exist"}},
		{"lcore is pmd", "datapath: netdev\ndpdk: {enabled: true, pmd_cpus: \"2,3\", lcore_cpus: \"3\"}\n", []string{"dpdk.lcore_cpus: CPU 3 is also a PMD CPU"}},
		{"socket_mem too long", "datapath: netdev\ndpdk: {enabled: true, socket_mem: [1024, 0, 0]}\n", []string{"dpdk.socket_mem: 3 values for 2 NUMA node(s)"}},
		{"physnet bridge is br-int", "physnets: {physnet1: {bridge: br-int}}\n",
			[]string{"physnets.physnet1.bridge: bridge br-int is already the bridge of integration_bridge: give each role and each physnet its own bridge"}},
		{"two physnets one bridge", "physnets: {a: {bridge: br-p}, b: {bridge: br-p}}\n", []string{"physnets.b.bridge: bridge br-p is already the bridge of physnets.a.bridge"}},
		{"external is tunnel bridge", "external_bridge: br-tun\ntunnel: {local_ip: 10.0.0.1, types: [gre]}\n", []string{"external_bridge: bridge br-tun is already the bridge of tunnel.bridge"}},
		{"physnet bridge missing", "physnets: {a: {interface: eth1}}\n", []string{"physnets.a.bridge: missing"}},
		{"shared uplink", "physnets: {a: {bridge: br-a, interface: eth1}, b: {bridge: br-b, interface: eth1}}\n", []string{"physnets.b.interface: eth1 is already the uplink of physnets.a"}},
		{"uplink named like a patch port", "physnets: {a: {bridge: br-a, interface: patch-tun}}\ntunnel: {local_ip: 10.0.0.1, types: [vxlan]}\n",
			[]string{"physnets.a.interface: patch-tun is the name of a port offlane creates on br-int"}},
		{"long bridge name", "integration_bridge: br-integration-1\n", []string{`integration_bridge: "br-integration-1" is not a bridge name`}},
		{"bad datapath", "datapath: kernel\n", []string{`datapath: "kernel" is not a datapath type: use netdev (userspace, DPDK) or system (kernel)`}},
		{"bad endpoint", "ovsdb: /run/db.sock\n", []string{"ovsdb:", "use unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT"}},
		{"relative unix", "ovsdb: unix:db.sock\n", []string{"ovsdb:", "must be absolute"}},
		{"tcp without port", "ovsdb: tcp:10.0.0.1\n", []string{"ovsdb:", "want tcp:HOST:PORT"}},
		{"ssl without tls", "ovsdb: ssl:10.0.0.1:6640\n", []string{"tls: an ssl: endpoint needs client TLS files"}},
		{"ssl with partial tls", "ovsdb: ssl:10.0.0.1:6640\ntls: {private_key: /k.pem}\n", []string{"tls.certificate: missing", "tls.ca_cert: missing"}},
		{"tls without ssl", "tls: {private_key: /k, certificate: /c, ca_cert: /ca}\n", []string{"tls: only used with an ssl: endpoint"}},
		{"devargs without dpdk", "datapath: netdev\nphysnets: {a: {bridge: br-a, interface: dpdk0, devargs: \"0000:81:00.0\"}}\n", []string{"physnets.a.devargs: a DPDK uplink needs DPDK"}},
		{"tc_policy without offload", "tc_policy: skip_sw\n", []string{"tc_policy: only used with hardware offload: set hw_offload: true"}},
		{"bad tc_policy", "hw_offload: true\ntc_policy: fast\n", []string{`tc_policy: "fast" is not a tc policy`}},
		{"tso on system", "datapath: system\nuserspace_tso: true\n", []string{"userspace_tso: userspace TSO applies to the netdev datapath only"}},
		{"relative socket dir", "vhostuser_socket_dir: run/vhu\n", []string{"vhostuser_socket_dir:", "absolute"}},
		{"socket_limit below socket_mem", "datapath: netdev\ndpdk: {enabled: true, socket_mem: [1024, 0], socket_limit: [512, 0]}\n",
			[]string{"dpdk.socket_limit: 512 MB on NUMA node 0 is below socket_mem's 1024 MB: raise the limit (0 = none) or lower socket_mem"}},
		{"socket_limit too long", "datapath: netdev\ndpdk: {enabled: true, socket_limit: [0, 0, 0]}\n", []string{"dpdk.socket_limit: 3 values for 2 NUMA node(s)"}},
		{"maxsleep range", "datapath: netdev\ndpdk: {enabled: true, pmd_maxsleep: 20000}\n", []string{"dpdk.pmd_maxsleep: 20000 µs is out of range"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(parse(t, tc.in), twoNUMA())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key == "" || ce.Fix == "" {
				t.Errorf("not a *ConfigError with key and fix: %#v", err)
			}
		})
	}
}

func TestResolveSocketLimit(t *testing.T) {
	spec, err := Resolve(parse(t, "datapath: netdev\ndpdk: {enabled: true, socket_mem: [1024, 512], socket_limit: auto}\n"), twoNUMA())
	if err != nil {
		t.Fatal(err)
	}
	l := NodeLayout(spec)
	if l.OtherConfig["dpdk-socket-limit"] != "1024,512" || l.OtherConfig["dpdk-socket-mem"] != "1024,512" {
		t.Errorf("other_config %v", l.OtherConfig)
	}
	if !strings.Contains(strings.Join(spec.Derivations, "\n"), "dpdk.socket_limit: auto → [1024, 512]: socket_mem") {
		t.Errorf("derivations %v", spec.Derivations)
	}
	spec, err = Resolve(parse(t, "datapath: netdev\ndpdk: {enabled: true, socket_mem: [1024], socket_limit: [0, 2048]}\n"), twoNUMA())
	if err != nil {
		t.Fatal(err)
	}
	if got := NodeLayout(spec).OtherConfig["dpdk-socket-limit"]; got != "0,2048" {
		t.Errorf("dpdk-socket-limit %q", got)
	}
}

func TestResolveDPDKNeedsHardware(t *testing.T) {
	_, err := Resolve(parse(t, "datapath: netdev\ndpdk: {enabled: true}\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "dpdk: needs the node's CPU, NUMA and hugepage layout") {
		t.Fatalf("err %v", err)
	}
	// Without DPDK, no hardware is needed.
	if _, err := Resolve(parse(t, "datapath: system\n"), nil); err != nil {
		t.Fatal(err)
	}
}

func TestResolveDefaults(t *testing.T) {
	spec, err := Resolve(parse(t, "tunnel: {local_ip: 10.0.0.1, types: [geneve]}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := spec.Config
	if c.OVSDB != DefaultOVSDB || c.Datapath != "system" || c.IntegrationBridge != "br-int" || c.Tunnel.Bridge != "br-tun" || c.VhostUserSocketDir != DefaultVhostUserSocketDir {
		t.Errorf("defaults %+v", c)
	}
}
