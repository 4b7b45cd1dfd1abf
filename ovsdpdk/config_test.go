package ovsdpdk

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/offlane/offlane/hwdetect"
)

// exampleYAML is the node config from the issue / README.
const exampleYAML = `
ovsdb: unix:/var/run/openvswitch/db.sock   # also tcp:/ssl: with TLS settings
datapath: netdev            # netdev (userspace / DPDK) | system (kernel datapath)
dpdk:                       # optional, datapath netdev only
  enabled: true
  socket_mem: auto          # or MB per NUMA node, e.g. [1024, 0]
  pmd_cpus: auto            # or a CPU list "2,3"; auto = isolated CPUs on the NICs' NUMA nodes
  lcore_cpus: auto
  extra: ""                 # dpdk-extra passthrough
hw_offload: false           # other_config:hw-offload (+ tc-policy when set)
userspace_tso: true
integration_bridge: br-int
external_bridge: br-ex
physnets:                   # flat / VLAN provider networks
  physnet1: {bridge: br-phys1, interface: eth1}    # interface optional
tunnel:
  local_ip: 10.99.0.1
  bridge: br-tun
  types: [vxlan]            # vxlan | geneve | gre
vhostuser_socket_dir: /var/run/offlane/vhu
`

func TestParseNodeConfigExample(t *testing.T) {
	cfg, err := ParseNodeConfig("node.yaml", strings.NewReader(exampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	f, tr := false, true
	want := &NodeConfig{
		OVSDB:    "unix:/var/run/openvswitch/db.sock",
		Datapath: "netdev",
		DPDK: &DPDKConfig{Enabled: true, SocketMem: SocketMem{Auto: true}, PMDCPUs: CPUSpec{Auto: true},
			LcoreCPUs: CPUSpec{Auto: true}},
		HWOffload: &f, UserspaceTSO: &tr,
		IntegrationBridge: "br-int", ExternalBridge: "br-ex",
		Physnets:           map[string]Physnet{"physnet1": {Bridge: "br-phys1", Interface: "eth1"}},
		Tunnel:             &TunnelConfig{LocalIP: "10.99.0.1", Bridge: "br-tun", Types: []string{"vxlan"}},
		VhostUserSocketDir: "/var/run/offlane/vhu",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestParseNodeConfigValues(t *testing.T) {
	cfg, err := ParseNodeConfig("n", strings.NewReader("dpdk:\n  socket_mem: [1024, 0]\n  pmd_cpus: \"2,3,6-7\"\n  lcore_cpus: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.DPDK.SocketMem.MB; !reflect.DeepEqual(got, []int{1024, 0}) {
		t.Errorf("socket_mem %v", got)
	}
	if got := cfg.DPDK.PMDCPUs.CPUs; !reflect.DeepEqual(got, []int{2, 3, 6, 7}) {
		t.Errorf("pmd_cpus %v", got)
	}
	if got := cfg.DPDK.LcoreCPUs.CPUs; !reflect.DeepEqual(got, []int{1}) {
		t.Errorf("lcore_cpus %v", got)
	}
	cfg, err = ParseNodeConfig("n", strings.NewReader("dpdk: {socket_mem: 2048}\n"))
	if err != nil || !reflect.DeepEqual(cfg.DPDK.SocketMem.MB, []int{2048}) {
		t.Errorf("socket_mem scalar: %v %v", cfg, err)
	}
}

func TestParseNodeConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"unknown top key", "datapath: netdev\nintegration_brige: br-int\n",
			[]string{"node.yaml:2: integration_brige: unknown key", "did you mean integration_bridge?"}},
		{"unknown nested key", "dpdk:\n  enabled: true\n  socketmem: auto\n",
			[]string{"node.yaml:3: dpdk.socketmem: unknown key", "did you mean dpdk.socket_mem?"}},
		{"unknown physnet key", "physnets:\n  physnet1: {bridge: br-p, iface: eth1}\n",
			[]string{"physnets.physnet1.iface: unknown key"}},
		{"far-off key", "frobnicate: 1\n", []string{"frobnicate: unknown key", "remove it (known keys:"}},
		{"duplicate key", "datapath: netdev\ndatapath: system\n", []string{"datapath: given twice"}},
		{"bad socket_mem", "dpdk:\n  socket_mem: lots\n", []string{"node.yaml:2: dpdk.socket_mem:", "e.g. [1024, 0]"}},
		{"bad socket_mem item", "dpdk:\n  socket_mem: [1024, x]\n", []string{"dpdk.socket_mem", `"x" is not a number`}},
		{"bad socket_limit", "dpdk:\n  enabled: true\n  socket_limit: {a: 1}\n", []string{"node.yaml:3: dpdk.socket_limit:", "neither auto nor a list"}},
		{"bad socket_limit item", "dpdk:\n  socket_limit:\n    - 512\n    - lots\n", []string{"node.yaml:4: dpdk.socket_limit:", `"lots" is not a number`}},
		{"flow style finds the key", "dpdk: {enabled: true, socket_mem: auto, pmd_cpus: \"x\", lcore_cpus: auto}\n",
			[]string{"node.yaml:1: dpdk.pmd_cpus:", `bad cpu number "x"`}},
		{"bad cpu list", "dpdk:\n  pmd_cpus: \"3-1\"\n", []string{"node.yaml:2: dpdk.pmd_cpus:", "range 3-1 is reversed"}},
		{"wrong type", "hw_offload: maybe\n", []string{"node.yaml:1: hw_offload:", "cannot unmarshal"}},
		{"wrong type nested", "tunnel:\n  types: vxlan\n", []string{"tunnel.types", "cannot unmarshal"}},
		{"two documents", "datapath: netdev\n---\ndatapath: system\n", []string{"more than one YAML document"}},
		{"empty", "", []string{"empty config"}},
		{"not a mapping", "- a\n- b\n", []string{"not a mapping"}},
		{"syntax", "datapath: [\n", []string{"node.yaml", "fix the YAML syntax"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNodeConfig("node.yaml", strings.NewReader(tc.in))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *ConfigError", err)
			}
		})
	}
}

func TestCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		out  string
	}{
		{"0", []int{0}, "0"},
		{"2,3", []int{2, 3}, "2-3"},
		{" 8, 0-2 ,5", []int{0, 1, 2, 5, 8}, "0-2,5,8"},
		{"1,1,1", []int{1}, "1"},
	} {
		got, err := ParseCPUList(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v", tc.in, got, err)
		}
		if s := hwdetect.FormatCPUList(got); s != tc.out {
			t.Errorf("FormatCPUList(%v) = %q, want %q", got, s, tc.out)
		}
	}
	for _, bad := range []string{"", " ", "a", "1-", "-1", "3-1", "9000"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q) accepted", bad)
		}
	}
}

func TestCPUMask(t *testing.T) {
	for _, tc := range []struct {
		cpus []int
		want string
	}{
		{[]int{0}, "0x1"}, {[]int{1}, "0x2"}, {[]int{2, 3}, "0xc"}, {[]int{4}, "0x10"},
		{[]int{0, 63}, "0x8000000000000001"}, {[]int{64}, "0x10000000000000000"}, {nil, ""},
	} {
		if got := cpuMask(tc.cpus); got != tc.want {
			t.Errorf("cpuMask(%v) = %q, want %q", tc.cpus, got, tc.want)
		}
	}
}

func FuzzParseNodeConfig(f *testing.F) {
	f.Add(exampleYAML)
	f.Add("dpdk: {socket_mem: [1,2], pmd_cpus: \"1-3\"}\nphysnets: {a: {bridge: b}}\n")
	f.Add("tunnel: {types: [vxlan, gre], local_ip: ::1}\n")
	f.Fuzz(func(t *testing.T, in string) {
		cfg, err := ParseNodeConfig("f.yaml", strings.NewReader(in))
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned with an error")
			}
			if !strings.Contains(err.Error(), "f.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		// Whatever parses must resolve or be refused cleanly, never panic.
		spec, err := Resolve(cfg, nil)
		if err == nil {
			_ = NodeLayout(spec)
		}
	})
}
