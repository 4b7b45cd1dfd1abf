package sriov

import (
	"context"
	"fmt"
	"sort"
	"strconv"
)

// Entry is one VF's identity across the layers: the PF and VF index, the VF's PCI
// function and netdev, its representor (switchdev), the OVS port on the representor (or
// on the VF netdev) and the tenant port bound to it.
type Entry struct {
	PF       Device `json:"pf"`
	PFNetdev string `json:"pf_netdev"`
	VFIndex  int    `json:"vf_index"`
	VFPCI    string `json:"vf_pci"`
	VFNetdev string `json:"vf_netdev"`
	VFDriver string `json:"vf_driver"`
	// VFMAC is the MAC the PF's driver holds for the VF (IFLA_VF_MAC), "" when unset.
	VFMAC string `json:"vf_mac"`
	// Representor is the VF's representor netdev (switchdev), with its devlink port.
	Representor     string `json:"representor"`
	RepresentorPort string `json:"representor_port"` // "netdevsim/netdevsim1/131072"
	SwitchID        string `json:"switch_id"`
	OVSBridge       string `json:"ovs_bridge"`
	OVSPort         string `json:"ovs_port"`
	TenantPort      string `json:"tenant_port"`
}

// PFEntry is one PF with its VFs.
type PFEntry struct {
	PF       PF      `json:"pf"`
	Model    string  `json:"model"` // from hwdetect, "" when unknown
	SwitchID string  `json:"switch_id"`
	VFs      []Entry `json:"vfs"`
}

// Registry maps VF identities both ways. It is a snapshot, rebuilt from the system by
// Manager.Registry (devlink ports, sysfs phys_port_name and phys_switch_id, the PF
// drivers' VF lists, OVS); lookups return copies.
type Registry struct {
	PFs []PFEntry `json:"pfs"`
	// Warnings are inconsistencies between the sources (e.g. devlink and sysfs disagree
	// on a representor) and sources that could not be read.
	Warnings []string `json:"warnings"`

	byVFPCI, byVFNetdev, byRep, byOVSPort, byTenant map[string]*Entry
	byVF                                            map[vfKey]*Entry
}

type vfKey struct {
	pf Device
	vf int
}

// VF returns the entry of VF index vf of pf.
func (r *Registry) VF(pf Device, vf int) (Entry, bool) { return get(r.byVF[vfKey{pf, vf}]) }

// ByVFPCI returns the entry of the VF with this PCI address.
func (r *Registry) ByVFPCI(addr string) (Entry, bool) { return get(r.byVFPCI[addr]) }

// ByVFNetdev returns the entry of the VF with this netdev.
func (r *Registry) ByVFNetdev(name string) (Entry, bool) { return get(r.byVFNetdev[name]) }

// ByRepresentor returns the entry of the VF whose representor is name.
func (r *Registry) ByRepresentor(name string) (Entry, bool) { return get(r.byRep[name]) }

// ByOVSPort returns the entry of the VF attached to OVS as port.
func (r *Registry) ByOVSPort(port string) (Entry, bool) { return get(r.byOVSPort[port]) }

// ByTenantPort returns the entry of the VF bound to the tenant port id.
func (r *Registry) ByTenantPort(id string) (Entry, bool) { return get(r.byTenant[id]) }

func get(e *Entry) (Entry, bool) {
	if e == nil {
		return Entry{}, false
	}
	return *e, true
}

// Registry rebuilds the identity registry from the system. Sources that fail become
// warnings; only a failure to list the devices at all is an error.
func (m *Manager) Registry(ctx context.Context) (*Registry, error) {
	r := &Registry{PFs: []PFEntry{}, Warnings: []string{}}
	devs, dirs := m.listPFs()
	if _, err := m.sys.ReadDir("sys/bus"); err != nil {
		return nil, fmt.Errorf("list devices in /sys/bus: %w", err)
	}
	ports, err := m.dl.Ports(ctx)
	if err != nil {
		if len(devs) > 0 {
			r.Warnings = append(r.Warnings, "devlink ports unavailable, representors from sysfs only: "+err.Error())
		}
		ports = []DevlinkPort{}
	}
	// hwdetect: PCI models and representors from phys_port_name/phys_switch_id.
	type hwVF struct{ rep string }
	hwModel := map[string]string{}
	hwVFs := map[vfKey]hwVF{}
	if m.inv != nil {
		if node, err := m.inv.Detect(ctx); err != nil {
			r.Warnings = append(r.Warnings, "hwdetect: "+err.Error())
		} else {
			for _, n := range node.NICs {
				if n.PCIAddress == "" || n.SRIOV == nil {
					continue
				}
				d := Device{Bus: "pci", Name: n.PCIAddress}
				hwModel[n.PCIAddress] = n.Model
				for _, vf := range n.SRIOV.VFs {
					hwVFs[vfKey{d, vf.Index}] = hwVF{rep: vf.Representor}
				}
			}
		}
	}
	ovs := map[string]OVSInterface{}
	if m.ovs != nil {
		ifs, err := m.ovs.Interfaces(ctx)
		if err != nil {
			r.Warnings = append(r.Warnings, "OVS ports unavailable: "+err.Error())
		}
		for _, i := range ifs {
			ovs[i.Name] = i
		}
	}

	for _, d := range devs {
		pf, err := m.readPF(ctx, d, dirs[d], ports)
		if err != nil {
			r.Warnings = append(r.Warnings, err.Error())
			continue
		}
		pe := PFEntry{PF: *pf, Model: hwModel[d.Name], VFs: []Entry{}}
		if pf.Netdev != "" {
			pe.SwitchID, _ = readAttr(m.sys, "sys/class/net/"+pf.Netdev+"/phys_switch_id")
		}
		var macs map[int]string
		if pf.Netdev != "" && pf.NumVFs > 0 {
			if cfgs, err := m.links.VFConfigs(ctx, pf.Netdev); err == nil {
				macs = map[int]string{}
				for _, c := range cfgs {
					if !isZeroMAC(c.MAC) {
						macs[c.Index] = c.MAC.String()
					}
				}
			} else {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s: VF list over rtnetlink: %v", pf.Device, err))
			}
		}
		reps := map[int]DevlinkPort{}
		for _, p := range ports {
			if p.Device == d && p.Flavour == FlavourPCIVF && !p.External && p.VF >= 0 {
				reps[p.VF] = p
			}
		}
		for _, vf := range pf.VFs {
			e := Entry{PF: d, PFNetdev: pf.Netdev, VFIndex: vf.Index, VFPCI: vf.PCIAddress, VFNetdev: vf.Netdev, VFDriver: vf.Driver, VFMAC: macs[vf.Index], SwitchID: pe.SwitchID}
			if p, ok := reps[vf.Index]; ok {
				e.Representor = p.Netdev
				e.RepresentorPort = d.String() + "/" + strconv.FormatUint(uint64(p.Index), 10)
			}
			if h, ok := hwVFs[vfKey{d, vf.Index}]; ok {
				switch {
				case e.Representor == "" && h.rep != "":
					e.Representor = h.rep // devlink did not answer: sysfs names it
				case h.rep != "" && h.rep != e.Representor:
					r.Warnings = append(r.Warnings, fmt.Sprintf("%s VF %d: devlink says representor %s, sysfs phys_port_name says %s", d, vf.Index, e.Representor, h.rep))
				}
			}
			if e.Representor != "" {
				m.checkRepresentor(r, &e, pf)
			}
			for _, nd := range []string{e.Representor, e.VFNetdev} {
				if o, ok := ovs[nd]; ok && nd != "" {
					e.OVSBridge, e.OVSPort, e.TenantPort = o.Bridge, o.Port, o.IfaceID
					break
				}
			}
			pe.VFs = append(pe.VFs, e)
		}
		r.PFs = append(r.PFs, pe)
	}
	r.index()
	sort.Strings(r.Warnings)
	return r, nil
}

// checkRepresentor cross-checks a representor's sysfs identity with devlink's: the
// same switch as the PF and a phys_port_name naming this VF.
func (m *Manager) checkRepresentor(r *Registry, e *Entry, pf *PF) {
	base := "sys/class/net/" + e.Representor
	sw, _ := readAttr(m.sys, base+"/phys_switch_id")
	pn, _ := readAttr(m.sys, base+"/phys_port_name")
	if e.SwitchID != "" && sw != e.SwitchID {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s VF %d: representor %s is on switch %q, the PF on %q", pf.Device, e.VFIndex, e.Representor, sw, e.SwitchID))
	}
	if mm := reVFRepPort.FindStringSubmatch(pn); mm == nil || mm[2] != strconv.Itoa(e.VFIndex) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s VF %d: representor %s has phys_port_name %q, want pf<N>vf%d", pf.Device, e.VFIndex, e.Representor, pn, e.VFIndex))
	}
}

func (r *Registry) index() {
	r.byVF = map[vfKey]*Entry{}
	r.byVFPCI, r.byVFNetdev, r.byRep, r.byOVSPort, r.byTenant = map[string]*Entry{}, map[string]*Entry{}, map[string]*Entry{}, map[string]*Entry{}, map[string]*Entry{}
	for i := range r.PFs {
		for j := range r.PFs[i].VFs {
			e := &r.PFs[i].VFs[j]
			r.byVF[vfKey{e.PF, e.VFIndex}] = e
			for m, k := range map[*map[string]*Entry]string{&r.byVFPCI: e.VFPCI, &r.byVFNetdev: e.VFNetdev, &r.byRep: e.Representor, &r.byOVSPort: e.OVSPort, &r.byTenant: e.TenantPort} {
				if k != "" {
					(*m)[k] = e
				}
			}
		}
	}
}
