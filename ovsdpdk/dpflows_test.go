package ovsdpdk

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestParseDatapathFlowsCaptured reads `ovs-appctl dpctl/dump-flows -m` as OVS 3.1
// printed it in the kernel lab (TestKernelOVSHWOffload): the kernel datapath with
// hw-offload=true on veth representor stand-ins, every flow in tc (software: the veths
// have no NIC, so no offloaded:yes).
func TestParseDatapathFlowsCaptured(t *testing.T) {
	f, err := os.Open("testdata/dpctl/kernel-hw-offload-veth.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flows, err := ParseDatapathFlows(f)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		inPort, actions, used string
		packets, bytes        uint64
	}
	wants := []want{
		{"hwrepp1", "hwrepp2", "0.144s", 3, 252},
		{"hwrepp1", "hwrepp2,push_vlan(vid=100,pcp=0),br-phys1", "never", 0, 0},
		{"hwrepp2", "hwrepp1", "0.140s", 3, 252},
		{"hwrepp2", "hwrepp1", "never", 0, 0},
	}
	if len(flows) != len(wants) {
		t.Fatalf("%d flows, want %d: %+v", len(flows), len(wants), flows)
	}
	for i, w := range wants {
		g := flows[i]
		if g.InPort != w.inPort || g.Actions != w.actions || g.Used != w.used || g.Packets != w.packets || g.Bytes != w.bytes ||
			g.DP != "tc" || g.Offloaded != "" || !g.InTC() || g.InHW() || len(g.UFID) != 36 {
			t.Errorf("flow %d: %+v, want %+v in tc", i, g, w)
		}
		if !strings.HasPrefix(g.Match, "skb_priority(0/0),") || !strings.HasSuffix(g.Match, ")") {
			t.Errorf("flow %d match %q", i, g.Match)
		}
	}
	if m := flows[0].Match; !strings.Contains(m, "eth(src=00:00:00:00:00:00/00:00:00:00:00:00,dst=fa:16:3e:00:01:02),eth_type(0x0800)") {
		t.Errorf("match %q", m)
	}
	// the flood flow outputs to hwrepp2 and br-phys1, not to the words in its actions
	fl := &flows[1]
	for port, touches := range map[string]bool{"hwrepp1": true, "hwrepp2": true, "br-phys1": true, "push_vlan": false, "vid=100": false, "100": false, "": false} {
		if fl.Touches(port) != touches {
			t.Errorf("flood flow Touches(%q) = %v", port, !touches)
		}
	}
}

func TestParseDatapathFlow(t *testing.T) {
	cases := []struct {
		name, line string
		want       DatapathFlow
	}{
		{"hardware", "ufid:u1, in_port(pf0vf0),eth(src=fa:16:3e:00:00:01,dst=fa:16:3e:00:00:02),eth_type(0x0800), packets:10, bytes:980, used:0.5s, offloaded:yes, dp:tc, actions:pf0vf1",
			DatapathFlow{UFID: "u1", Match: "in_port(pf0vf0),eth(src=fa:16:3e:00:00:01,dst=fa:16:3e:00:00:02),eth_type(0x0800)", InPort: "pf0vf0",
				Packets: 10, Bytes: 980, Used: "0.5s", Offloaded: "yes", DP: "tc", Actions: "pf0vf1"}},
		{"partial, tcp flags, extra info", "ufid:u2, recirc_id(0),in_port(3),eth_type(0x0800),ipv4(frag=no), packets:7, bytes:560, used:0.010s, flags:SFP., offloaded:partial, dp:ovs, dp-extra-info:miniflow_bits(4,1), actions:ct(zone=1),recirc(0x2)",
			DatapathFlow{UFID: "u2", Match: "recirc_id(0),in_port(3),eth_type(0x0800),ipv4(frag=no)", InPort: "3", Packets: 7, Bytes: 560,
				Used: "0.010s", Flags: "SFP.", Offloaded: "partial", DP: "ovs", Actions: "ct(zone=1),recirc(0x2)"}},
		{"without -m", "in_port(vm1),eth_type(0x0806), packets:0, bytes:0, used:never, actions:drop",
			DatapathFlow{Match: "in_port(vm1),eth_type(0x0806)", InPort: "vm1", Used: "never", Actions: "drop"}},
		{"nested in_port is not the flow's", "tunnel(tun_id=0x1,in_port(x)),in_port(vxlan_sys_4789), packets:1, bytes:2, used:1.0s, actions:set(tunnel(tun_id=0x2)),clone(p2)",
			DatapathFlow{Match: "tunnel(tun_id=0x1,in_port(x)),in_port(vxlan_sys_4789)", InPort: "vxlan_sys_4789", Packets: 1, Bytes: 2, Used: "1.0s", Actions: "set(tunnel(tun_id=0x2)),clone(p2)"}},
	}
	for _, c := range cases {
		got, err := ParseDatapathFlow(c.line)
		if err != nil || got != c.want {
			t.Errorf("%s: %v\n got %+v\nwant %+v", c.name, err, got, c.want)
		}
	}
	hw, _ := ParseDatapathFlow(cases[0].line)
	partial, _ := ParseDatapathFlow(cases[1].line)
	if !hw.InHW() || !hw.InTC() || partial.InHW() || partial.InTC() {
		t.Errorf("hw %v/%v partial %v/%v", hw.InHW(), hw.InTC(), partial.InHW(), partial.InTC())
	}
	if c, _ := ParseDatapathFlow(cases[3].line); !c.Touches("p2") || c.Touches("x") {
		t.Errorf("clone(p2) output: Touches(p2) %v, Touches(x) %v", c.Touches("p2"), c.Touches("x"))
	}

	for _, bad := range []string{
		"",
		"ufid:u1",
		"in_port(1),eth() packets:1",
		"in_port(1)), packets:1, bytes:1, used:never, actions:drop",
		"in_port(1), packets:x, bytes:1, used:never, actions:drop",
		"in_port(1), packets:1, bytes:1, used:never",
		"in_port(1), packets:1, bytes:1, actions:drop",
		"in_port(1), packets:1, packets:2, bytes:1, used:never, actions:drop",
		"in_port(1), packets 1, bytes:1, used:never, actions:drop",
	} {
		if f, err := ParseDatapathFlow(bad); err == nil {
			t.Errorf("%q parsed: %+v", bad, f)
		}
	}
	// the userspace datapath's dump has per-thread headers
	fs, err := ParseDatapathFlows(strings.NewReader("flow-dump from the main thread:\n" + cases[2].line + "\n\nflow-dump from pmd on cpu core: 1\n" + cases[0].line + "\n"))
	if err != nil || len(fs) != 2 {
		t.Errorf("headers: %d flows, %v", len(fs), err)
	}
	if _, err := ParseDatapathFlows(strings.NewReader(cases[2].line + "\nnot a flow\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad second line: %v", err)
	}
}

func TestParsePortDesc(t *testing.T) {
	// the shape of `ovs-ofctl -O OpenFlow15 dump-ports-desc` (OVS 3.1)
	out := `OFPST_PORT_DESC reply (OF1.5) (xid=0x2):
 1(patch-int): addr:5a:4e:21:8a:0c:1b
     config:     0
     state:      LIVE
     speed: 0 Mbps now, 0 Mbps max
 2(hwrepp1): addr:ba:3c:7e:00:11:02
     config:     0
     state:      LIVE
     current:    10GB-FD COPPER
     speed: 10000 Mbps now, 0 Mbps max
 LOCAL(br-int): addr:6e:8b:11:94:2a:41
     config:     PORT_DOWN
     state:      LINK_DOWN
     speed: 0 Mbps now, 0 Mbps max
`
	got, err := ParsePortDesc(out)
	if err != nil || len(got) != 2 || got[1] != "patch-int" || got[2] != "hwrepp1" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ParsePortDesc(" x(p): addr:00:00:00:00:00:01\n"); err == nil {
		t.Error("port number x accepted")
	}
}

func FuzzParseDatapathFlows(f *testing.F) {
	b, err := os.ReadFile("testdata/dpctl/kernel-hw-offload-veth.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("flow-dump from the main thread:\nin_port(1), packets:1, bytes:1, used:never, offloaded:yes, dp:tc, actions:2\n")
	f.Fuzz(func(t *testing.T, s string) {
		flows, err := ParseDatapathFlows(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, fl := range flows {
			_ = fl.Touches(fl.InPort)
			// a parsed flow prints back to a line that parses to the same flow
			line := fl.Match + ", packets:" + strconv.FormatUint(fl.Packets, 10) + ", bytes:" + strconv.FormatUint(fl.Bytes, 10) + ", used:" + fl.Used
			if fl.UFID != "" {
				line = "ufid:" + fl.UFID + ", " + line
			}
			for _, kv := range [][2]string{{"flags", fl.Flags}, {"offloaded", fl.Offloaded}, {"dp", fl.DP}} {
				if kv[1] != "" {
					line += ", " + kv[0] + ":" + kv[1]
				}
			}
			again, err := ParseDatapathFlow(line + ", actions:" + fl.Actions)
			if err != nil || again != fl {
				t.Fatalf("%q: reparsed %+v, %v; was %+v", line, again, err, fl)
			}
		}
	})
}

func FuzzParsePortDesc(f *testing.F) {
	f.Add(" 1(p1): addr:00:00:00:00:00:01\n LOCAL(br): addr:00:00:00:00:00:02\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParsePortDesc(s)
		if err != nil {
			return
		}
		for n, name := range m {
			if n <= 0 || name == "" {
				t.Fatalf("port %d %q", n, name)
			}
		}
	})
}
