package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/test/lab"
)

// TestLabAgentVhostUser: a vhost-user port bound to an OVS-DPDK node makes the agent
// create the dpdkvhostuserclient port itself; the binding carries the socket path and
// mode=server; the port is DOWN until the VM (dpdk-testpmd) opens the socket, ACTIVE
// while it runs, DOWN when it dies, and ACTIVE again when it comes back.
func TestLabAgentVhostUser(t *testing.T) {
	lab.RequireDPDK(t)
	lab.Require(t, "dpdk-testpmd")
	e := newFullEnv(t, fullOptions{DPDK: true})
	netID := e.createNet("net1", "10.8.0.0/24")
	p := e.createBoundPort("vnf", netID, "vhost-user")
	e.start()

	name := kernel.IfName("vhu", p.ID) // Neutron's naming, which the agent follows
	var sock string
	eventually(t, "vhost-user port created by the agent", 20*time.Second, func() bool {
		rows, err := e.o.Select("Interface", []any{[]any{"name", "==", name}}, "type", "options")
		if err != nil || len(rows) != 1 {
			return false
		}
		if rows[0]["type"] != "dpdkvhostuserclient" {
			t.Fatalf("interface %s type %v, want dpdkvhostuserclient", name, rows[0]["type"])
		}
		sock = optionOf(rows[0]["options"], "vhost-server-path")
		return sock != ""
	})
	var b boundPort
	eventually(t, "vhost-user binding written", 20*time.Second, func() bool {
		b = e.getPort(p.ID)
		return b.VIFType != "unbound" && b.VIFType != ""
	})
	if b.Status != controlplane.PortStatusDown {
		t.Fatalf("vhost-user port %s (%v) before the VM connected; want DOWN", b.Status, b.VIFDetails)
	}
	if b.VIFType != "vhostuser" || b.VIFDetails["vhostuser_socket"] != sock || b.VIFDetails["vhostuser_mode"] != "server" {
		t.Fatalf("binding: vif_type %q details %v; want vhostuser, socket %s, mode server", b.VIFType, b.VIFDetails, sock)
	}
	if !strings.HasPrefix(sock, e.vhostDir+"/") {
		t.Errorf("socket %s is not in the node's vhostuser_socket_dir %s", sock, e.vhostDir)
	}

	vm := e.o.StartTestPMD(t, lab.TestPMDOptions{Socket: sock, MAC: p.MAC})
	start := time.Now()
	e.waitStatus(p.ID, controlplane.PortStatusActive)
	t.Logf("ACTIVE %v after testpmd opened the socket", time.Since(start).Round(time.Millisecond))

	if err := killPID(vm.PID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "testpmd gone", 10*time.Second, func() bool { return !vm.Alive() })
	e.waitStatus(p.ID, controlplane.PortStatusDown)

	// A restarted VM opens a fresh socket (the dead one's file is removed first, as a
	// hypervisor does before it listens again).
	removeFile(t, sock)
	e.o.StartTestPMD(t, lab.TestPMDOptions{Socket: sock, MAC: p.MAC})
	e.waitStatus(p.ID, controlplane.PortStatusActive)
	if got := e.getPort(p.ID); fmt.Sprint(got.VIFDetails["vhostuser_socket"]) != sock {
		t.Errorf("socket after the VM's restart: %v, want %s", got.VIFDetails["vhostuser_socket"], sock)
	}
}

// optionOf reads a key of an OVSDB map column as ovsdb-client prints it
// (["map", [[k, v], ...]]).
func optionOf(col any, key string) string {
	m, ok := col.([]any)
	if !ok || len(m) != 2 {
		return ""
	}
	pairs, _ := m[1].([]any)
	for _, p := range pairs {
		kv, _ := p.([]any)
		if len(kv) == 2 && kv[0] == key {
			return fmt.Sprint(kv[1])
		}
	}
	return ""
}
