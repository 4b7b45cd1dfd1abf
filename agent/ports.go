package agent

import "github.com/offlane/offlane/ovsdpdk"

// diffPorts compares the OVS ports the agent manages of one kind (ours picks them from
// have) with the wanted ones by name: add the missing and the changed (iface-id or MAC;
// PortAdd replaces), delete the unwanted.
func diffPorts(have []ovsdpdk.PortStatus, want map[string]ovsdpdk.Port, ours func(ovsdpdk.PortStatus) bool) (add []ovsdpdk.Port, del []string) {
	seen := map[string]bool{}
	for _, h := range have {
		if !ours(h) {
			continue
		}
		seen[h.Name] = true
		w, ok := want[h.Name]
		switch {
		case !ok:
			del = append(del, h.Name)
		case h.IfaceID != w.IfaceID || h.MAC != w.MAC:
			add = append(add, w)
		}
	}
	for n, w := range want {
		if !seen[n] {
			add = append(add, w)
		}
	}
	return add, del
}
