package kernellab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Netdevsim is a netdevsim device created for a guest test.
type Netdevsim struct {
	ID int
	// Handle is its devlink handle, "netdevsim/netdevsim<ID>".
	Handle string
	// Dir is its sysfs directory, /sys/bus/netdevsim/devices/netdevsim<ID>.
	Dir string
	// Ports are the netdevs of its physical ports, by port index.
	Ports []string
}

// NewNetdevsim creates netdevsim device id with the given number of physical ports
// (echo "id ports" > /sys/bus/netdevsim/new_device), waits for its netdevs and deletes
// it in t.Cleanup. Guest only.
func NewNetdevsim(t testing.TB, id, ports int) *Netdevsim {
	t.Helper()
	RequireGuest(t)
	const bus = "/sys/bus/netdevsim"
	if err := os.WriteFile(bus+"/new_device", []byte(fmt.Sprintf("%d %d", id, ports)), 0); err != nil {
		t.Fatalf("netdevsim: create device %d: %v", id, err)
	}
	n := &Netdevsim{ID: id, Handle: "netdevsim/netdevsim" + strconv.Itoa(id), Dir: filepath.Join(bus, "devices", "netdevsim"+strconv.Itoa(id))}
	t.Cleanup(func() {
		if err := os.WriteFile(bus+"/del_device", []byte(strconv.Itoa(id)), 0); err != nil {
			t.Errorf("netdevsim: delete device %d: %v", id, err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(n.Dir, "net"))
		if len(ents) >= ports {
			byPort := map[int]string{}
			for _, e := range ents {
				// Physical ports are named p<index+1> (phys_port_name).
				pn, _ := os.ReadFile(filepath.Join(n.Dir, "net", e.Name(), "phys_port_name"))
				var p int
				if _, err := fmt.Sscanf(string(pn), "p%d", &p); err == nil && p >= 1 {
					byPort[p-1] = e.Name()
				}
			}
			if len(byPort) == ports {
				for i := range ports {
					n.Ports = append(n.Ports, byPort[i])
				}
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("netdevsim: device %d has no %d port netdevs after 10s (found %d)", id, ports, len(ents))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SetNumVFs writes sriov_numvfs directly (for tests that set up a starting state).
func (n *Netdevsim) SetNumVFs(t testing.TB, vfs int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(n.Dir, "sriov_numvfs"), []byte(strconv.Itoa(vfs)), 0); err != nil {
		t.Fatalf("netdevsim%d: sriov_numvfs %d: %v", n.ID, vfs, err)
	}
}
