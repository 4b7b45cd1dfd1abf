package sriov

import (
	"strconv"
	"strings"
)

// Slot is how a tenant port names the VF it uses (binding:profile pci_slot): the VF's
// PCI address; for a VF that is not a PCI function (netdevsim's), its devlink-style
// handle "<bus>/<device>/vf<index>" ("netdevsim/netdevsim1/vf0"), which no PCI address
// can be mistaken for.
func (e Entry) Slot() string {
	if e.VFPCI != "" {
		return e.VFPCI
	}
	return e.PF.String() + "/vf" + strconv.Itoa(e.VFIndex)
}

// BySlot returns the entry of the VF a port's pci_slot names (Entry.Slot): a PCI
// address, or the handle of a VF without one.
func (r *Registry) BySlot(slot string) (Entry, bool) {
	if r == nil || slot == "" {
		return Entry{}, false
	}
	if e, ok := r.ByVFPCI(slot); ok {
		return e, true
	}
	if !strings.Contains(slot, "/vf") {
		return Entry{}, false
	}
	for p := range r.PFs {
		for _, e := range r.PFs[p].VFs {
			if e.VFPCI == "" && e.Slot() == slot {
				return e, true
			}
		}
	}
	return Entry{}, false
}

// Representors lists every VF representor and PF netdev (uplink) of the registry's PFs:
// the devices an applier of tc rules for VFs may have left rules on.
func (r *Registry) Representors() []string {
	var out []string
	if r == nil {
		return nil
	}
	for p := range r.PFs {
		if nd := r.PFs[p].PF.Netdev; nd != "" {
			out = append(out, nd)
		}
		for _, e := range r.PFs[p].VFs {
			if e.Representor != "" {
				out = append(out, e.Representor)
			}
		}
	}
	return out
}

// NewRegistry returns a registry of the given PFs, indexed for the lookups (tests and
// callers that assemble entries themselves; Manager.Registry reads the system).
func NewRegistry(pfs []PFEntry) *Registry {
	r := &Registry{PFs: pfs, Warnings: []string{}}
	r.index()
	return r
}
