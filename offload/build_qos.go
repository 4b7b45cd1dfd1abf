package offload

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/offlane/offlane/controlplane"
)

// validDSCP are the DSCP marks Neutron accepts (RFC 2474 class selectors, RFC 2597 AF
// and RFC 3246 EF code points).
var validDSCP = map[int]bool{0: true, 8: true, 10: true, 12: true, 14: true, 16: true, 18: true, 20: true,
	22: true, 24: true, 26: true, 28: true, 30: true, 32: true, 34: true, 36: true, 38: true, 40: true,
	46: true, 48: true, 56: true}

// buildQoS sets each local port's effective QoS policy (its own qos_policy_id, else its
// network's; none for device_owner network:* ports, as Neutron) and puts the policies in
// use into ir.QoSPolicies, validated. It reports every problem, each naming the object and
// field.
func buildQoS(in BuildInput, ir *IR) []error {
	if len(ir.Ports) == 0 {
		return nil
	}
	var errs []error
	netPolicy := map[string]string{}
	for i := range in.Snapshot.Networks {
		n := &in.Snapshot.Networks[i]
		if n.QoSPolicyID != nil && *n.QoSPolicyID != "" {
			netPolicy[n.ID] = *n.QoSPolicyID
		}
	}
	policies := map[string]*controlplane.QoSPolicy{}
	for i := range in.Snapshot.QoSPolicies {
		q := &in.Snapshot.QoSPolicies[i]
		policies[q.ID] = q
	}
	for i := range in.Snapshot.Ports {
		cp := &in.Snapshot.Ports[i]
		p := ir.Ports[cp.ID]
		if p == nil || trusted(p.DeviceOwner) {
			continue
		}
		id, where := portQoSPolicy(cp, netPolicy[cp.NetworkID])
		if id == "" {
			continue
		}
		if _, ok := ir.QoSPolicies[id]; !ok {
			cq := policies[id]
			if cq == nil {
				errs = append(errs, fmt.Errorf("port %s: %s %s is not in the snapshot: give the QoS policy too", cp.ID, where, id))
				continue
			}
			q, err := buildQoSPolicy(cq)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ir.QoSPolicies[id] = q
		}
		p.QoSPolicyID = id // p is Build's own until Build returns
	}
	return errs
}

// portQoSPolicy is a port's effective QoS policy ID (its own qos_policy_id, else its
// network's, netPolicy; "" for none) and the field it came from, for errors.
func portQoSPolicy(cp *controlplane.Port, netPolicy string) (id, where string) {
	if cp.QoSPolicyID != nil && *cp.QoSPolicyID != "" {
		return *cp.QoSPolicyID, "qos_policy_id"
	}
	return netPolicy, "network " + cp.NetworkID + " qos_policy_id"
}

func buildQoSPolicy(cq *controlplane.QoSPolicy) (*QoSPolicy, error) {
	q := &QoSPolicy{ID: cq.ID, TenantID: cq.TenantID}
	var errs []error
	seen := map[string]string{}
	for i := range cq.Rules {
		cr := &cq.Rules[i]
		r, err := buildQoSRule(cq.ID, cr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		key := r.Type + " " + r.Direction
		if other, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("qos policy %s rule %s: a second %s rule%s (rule %s): one per type and direction", cq.ID, r.ID, r.Type, dirSuffix(r.Direction), other))
			continue
		}
		seen[key] = r.ID
		q.Rules = append(q.Rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(q.Rules, func(a, b QoSRule) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		if c := strings.Compare(a.Direction, b.Direction); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return q, nil
}

func dirSuffix(dir string) string {
	if dir == "" {
		return ""
	}
	return " for " + dir
}

// maxQoSKbps bounds rates so that kbit/s → bit/s and bytes/s stay within OVSDB's and
// OpenFlow's 32-bit fields (Neutron's own limit is 2^31-1 kbit/s).
const maxQoSKbps = 1<<31 - 1

func buildQoSRule(policy string, cr *controlplane.QoSRule) (QoSRule, error) {
	where := fmt.Sprintf("qos policy %s rule %s", policy, cr.ID)
	r := QoSRule{ID: cr.ID, Type: cr.Type}
	val := func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	}
	direction := func() error {
		switch cr.Direction {
		case "":
			r.Direction = Egress // Neutron's default
		case Egress, Ingress:
			r.Direction = cr.Direction
		default:
			return fmt.Errorf("%s: direction %q: want egress or ingress", where, cr.Direction)
		}
		return nil
	}
	switch cr.Type {
	case QoSBandwidthLimit:
		if err := direction(); err != nil {
			return r, err
		}
		r.MaxKbps, r.MaxBurstKbps = val(cr.MaxKbps), val(cr.MaxBurstKbps)
		if r.MaxKbps < 1 || r.MaxKbps > maxQoSKbps {
			return r, fmt.Errorf("%s: max_kbps %d: want 1..%d", where, r.MaxKbps, maxQoSKbps)
		}
		if r.MaxBurstKbps < 0 || r.MaxBurstKbps > maxQoSKbps {
			return r, fmt.Errorf("%s: max_burst_kbps %d: want 0 (default: 80 %% of max_kbps) .. %d", where, r.MaxBurstKbps, maxQoSKbps)
		}
	case QoSMinimumBandwidth:
		if err := direction(); err != nil {
			return r, err
		}
		r.MinKbps = val(cr.MinKbps)
		if r.MinKbps < 1 || r.MinKbps > maxQoSKbps {
			return r, fmt.Errorf("%s: min_kbps %d: want 1..%d", where, r.MinKbps, maxQoSKbps)
		}
	case QoSDSCPMarking:
		if cr.Direction != "" {
			return r, fmt.Errorf("%s: direction %q on a dscp_marking rule: marking applies to the port's egress only, drop the direction", where, cr.Direction)
		}
		if cr.DSCPMark == nil || !validDSCP[*cr.DSCPMark] {
			return r, fmt.Errorf("%s: dscp_mark %v: want one of 0, 8, 10, 12, ..., 40, 46, 48, 56 (Neutron's valid marks)", where, intText(cr.DSCPMark))
		}
		r.DSCPMark = *cr.DSCPMark
	default:
		return r, fmt.Errorf("%s: type %q: want bandwidth_limit, dscp_marking or minimum_bandwidth", where, cr.Type)
	}
	return r, nil
}

func intText(p *int) string {
	if p == nil {
		return "missing"
	}
	return fmt.Sprint(*p)
}

// Rule returns the policy's rule of a type and direction (direction "" for
// dscp_marking), nil when it has none.
func (q *QoSPolicy) Rule(typ, direction string) *QoSRule {
	if q == nil {
		return nil
	}
	for i := range q.Rules {
		if q.Rules[i].Type == typ && q.Rules[i].Direction == direction {
			return &q.Rules[i]
		}
	}
	return nil
}

// BurstKb is a bandwidth limit's burst in kilobits: max_burst_kbps, or 80 % of max_kbps
// when unset (Neutron's OVS driver default), at least 1.
func (r *QoSRule) BurstKb() int {
	if r.MaxBurstKbps > 0 {
		return r.MaxBurstKbps
	}
	return max(1, r.MaxKbps*8/10)
}
