package controlplane_test

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/offlane/offlane/controlplane"
)

// createConcurrently fires n port creates at once and sorts the outcomes.
func createConcurrently(t *testing.T, c *gophercloud.ServiceClient, netID string, n int) (created []*ports.Port, exhausted int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			p, err := ports.Create(t.Context(), c, ports.CreateOpts{NetworkID: netID, Name: fmt.Sprint("p", i)}).Extract()
			mu.Lock()
			defer mu.Unlock()
			var ue gophercloud.ErrUnexpectedResponseCode
			switch {
			case err == nil:
				created = append(created, p)
			case errors.As(err, &ue) && ue.Actual == 409:
				wantErr(t, err, 409, "IpAddressGenerationFailure")
				exhausted++
			default:
				t.Errorf("create %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	return created, exhausted
}

// TestConcurrentPortCreates: 200 concurrent creates on a 254-address pool (one held by
// the network's DHCP port) all succeed with unique addresses and MACs; after a restart
// (bbolt file reopened) 200 more get the 53 remaining addresses and 147 answers 409
// IpAddressGenerationFailure; nothing is lost.
func TestConcurrentPortCreates(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	c := e.client("tok-a")
	n := createNet(t, c, networks.CreateOpts{Name: "busy"})
	sn, err := subnets.Create(t.Context(), c, subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.20.0.0/24", IPVersion: 4, GatewayIP: ptr("")}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if p := sn.AllocationPools; len(p) != 1 || p[0].Start != "10.20.0.1" || p[0].End != "10.20.0.254" {
		t.Fatalf("pool %+v", p)
	}
	first, ex := createConcurrently(t, c, n.ID, 200)
	if len(first) != 200 || ex != 0 {
		t.Fatalf("first wave: %d created, %d exhausted", len(first), ex)
	}
	e.restart()
	c = e.client("tok-a")
	second, ex := createConcurrently(t, c, n.ID, 200)
	if len(second) != 53 || ex != 147 {
		t.Fatalf("second wave after restart: %d created, %d exhausted (want 53, 147)", len(second), ex)
	}
	all := append(first, second...)
	dhcp := listPorts(t, c, ports.ListOpts{NetworkID: n.ID, DeviceOwner: controlplane.OwnerDHCP})
	if len(dhcp) != 1 {
		t.Fatalf("DHCP ports: %+v", dhcp)
	}
	all = append(all, &dhcp[0].Port)
	ips, macs, ids := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, p := range all {
		if len(p.FixedIPs) != 1 {
			t.Fatalf("port %s addresses %+v", p.ID, p.FixedIPs)
		}
		ip := p.FixedIPs[0].IPAddress
		if ips[ip] || macs[p.MACAddress] {
			t.Fatalf("duplicate address %s or MAC %s", ip, p.MACAddress)
		}
		ips[ip], macs[p.MACAddress], ids[p.ID] = true, true, true
	}
	for a := netip.MustParseAddr("10.20.0.1"); a.Compare(netip.MustParseAddr("10.20.0.254")) <= 0; a = a.Next() {
		if !ips[a.String()] {
			t.Fatalf("address %s never handed out", a)
		}
	}
	// Everything acknowledged is stored, once more after another restart.
	e.restart()
	listed := listPorts(t, e.client("tok-a"), ports.ListOpts{NetworkID: n.ID})
	if len(listed) != 254 {
		t.Fatalf("listed %d ports, acknowledged 253 and the DHCP port", len(listed))
	}
	for _, p := range listed {
		if !ids[p.ID] {
			t.Fatalf("listed port %s was never acknowledged", p.ID)
		}
	}
}
