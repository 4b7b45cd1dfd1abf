package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"time"
)

// What a node agent reads from and writes to the store, beside the API: the whole tenant
// model at one revision, port binding results, and the agents registry (Neutron's
// /v2.0/agents shape) through which nodes publish their tunnel endpoints.

// KindAgent is the store kind of the agents registry.
const KindAgent = "agents"

// AgentTypeOVS is the agent_type offlane agents register with (Neutron's OVS agent name,
// so tools that look for it find it).
const AgentTypeOVS = "Open vSwitch agent"

// Agent is one node agent: Neutron's agent resource.
type Agent struct {
	ID                 string         `json:"id"`
	AgentType          string         `json:"agent_type"`
	Binary             string         `json:"binary"`
	Host               string         `json:"host"`
	Topic              string         `json:"topic"`
	AdminStateUp       bool           `json:"admin_state_up"`
	Alive              bool           `json:"alive"`
	StartedAt          string         `json:"started_at"`
	HeartbeatTimestamp string         `json:"heartbeat_timestamp"`
	Configurations     map[string]any `json:"configurations"`
	RevisionNumber     int            `json:"revision_number"`
}

// AgentID is the registry ID of the OVS agent of host.
func AgentID(host string) string { return "ovs-agent-" + host }

// State is the tenant model at one revision, as an agent reads it.
type State struct {
	Revision       int64
	Networks       []Network
	Subnets        []Subnet
	Ports          []Port
	Routers        []Router
	FloatingIPs    []FloatingIP
	SecurityGroups []SecurityGroup
	QoSPolicies    []QoSPolicy
	Agents         []Agent
}

// LoadState reads every object an agent needs in one consistent read transaction. The
// revision is read before the transaction: it is at most the snapshot's, so a watch from
// it replays (harmlessly) any change the snapshot already holds and misses none.
func LoadState(ctx context.Context, st Store) (*State, error) {
	s := &State{Revision: st.Revision()}
	err := st.View(ctx, func(tx ReadTx) error {
		return errors.Join(
			loadKind(tx, KindNetwork, &s.Networks),
			loadKind(tx, KindSubnet, &s.Subnets),
			loadKind(tx, KindPort, &s.Ports),
			loadKind(tx, KindRouter, &s.Routers),
			loadKind(tx, KindFloatingIP, &s.FloatingIPs),
			loadKind(tx, KindSecGroup, &s.SecurityGroups),
			loadKind(tx, KindQoSPolicy, &s.QoSPolicies),
			loadKind(tx, KindAgent, &s.Agents),
		)
	})
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	return s, nil
}

func loadKind[T any](tx ReadTx, kind string, dst *[]T) error {
	return tx.List(kind, func(id string, value []byte) error {
		var v T
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("%s %s: decode: %w", kind, id, err)
		}
		*dst = append(*dst, v)
		return nil
	})
}

// PortBinding is what an agent writes back on a port bound to its host.
type PortBinding struct {
	Status     string         // ACTIVE, DOWN, ERROR, BUILD
	VIFType    string         // binding:vif_type (ovs, vhostuser, hw_veb, binding_failed, unbound)
	VIFDetails map[string]any // binding:vif_details
}

// Port statuses.
const (
	PortStatusActive = "ACTIVE"
	PortStatusDown   = "DOWN"
	PortStatusBuild  = "BUILD"
	PortStatusError  = "ERROR"
)

// SetPortBinding writes a port's status and binding details, only if they differ from
// the stored ones (so an agent reacting to its own writes converges). It reports whether
// it wrote. The port must still be bound to host: a port rebound elsewhere meanwhile is
// left alone (false, nil). ErrNotFound when the port is gone.
func SetPortBinding(ctx context.Context, st Store, host, id string, b PortBinding) (bool, error) {
	wrote := false
	_, err := st.Update(ctx, func(tx Tx) error {
		raw, err := tx.Get(KindPort, id)
		if err != nil {
			return err
		}
		var p Port
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("port %s: decode: %w", id, err)
		}
		if p.HostID != host {
			return nil
		}
		want, err := normDetails(b.VIFDetails)
		if err != nil {
			return err
		}
		if p.Status == b.Status && p.VIFType == b.VIFType && reflect.DeepEqual(p.VIFDetails, want) {
			return nil
		}
		p.Status, p.VIFType, p.VIFDetails = b.Status, b.VIFType, maps.Clone(want)
		p.touch(time.Now().UTC().Format("2006-01-02T15:04:05Z"))
		wrote = true
		return save(tx, KindPort, id, &p)
	})
	if err != nil {
		return false, fmt.Errorf("port %s: set binding: %w", id, err)
	}
	return wrote, nil
}

// BindingHolds reports whether port p (as read from the store) already carries binding
// b, so an agent can skip the write (and its transaction) for ports that did not change.
func BindingHolds(p *Port, b PortBinding) bool {
	want, err := normDetails(b.VIFDetails)
	return err == nil && p.Status == b.Status && p.VIFType == b.VIFType && reflect.DeepEqual(p.VIFDetails, want)
}

// normDetails makes vif_details comparable with a stored port's: as JSON values (a stored
// map decodes numbers as float64), never nil.
func normDetails(details map[string]any) (map[string]any, error) {
	if details == nil {
		details = map[string]any{}
	}
	var want map[string]any
	if err := roundTrip(details, &want); err != nil {
		return nil, err
	}
	if want == nil {
		want = map[string]any{}
	}
	return want, nil
}

func roundTrip(v any, dst any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, dst)
}

// Heartbeat registers or refreshes an agent: its configurations (tunneling_ip,
// bridge_mappings, datapath_type, ...) and heartbeat_timestamp. Configurations changes
// are what other agents react to (a new VTEP); the timestamp alone is written every call
// (it is how liveness is judged), so callers keep the interval long (tens of seconds).
func Heartbeat(ctx context.Context, st Store, a Agent, now time.Time) error {
	if a.Host == "" {
		return errors.New("agent heartbeat: host is empty")
	}
	if a.ID == "" {
		a.ID = AgentID(a.Host)
	}
	ts := now.UTC().Format("2006-01-02 15:04:05")
	_, err := st.Update(ctx, func(tx Tx) error {
		var old Agent
		switch raw, err := tx.Get(KindAgent, a.ID); {
		case err == nil:
			if err := json.Unmarshal(raw, &old); err != nil {
				return fmt.Errorf("agent %s: decode: %w", a.ID, err)
			}
			a.StartedAt = old.StartedAt
			a.RevisionNumber = old.RevisionNumber + 1
			if a.StartedAt == "" {
				a.StartedAt = ts
			}
		case errors.Is(err, ErrNotFound):
			a.StartedAt, a.RevisionNumber = ts, 1
		default:
			return err
		}
		a.HeartbeatTimestamp, a.Alive, a.AdminStateUp = ts, true, true
		return putObj(tx, KindAgent, a.ID, &a, IndexEntry{Name: "host", Value: a.Host})
	})
	if err != nil {
		return fmt.Errorf("agent %s heartbeat: %w", a.Host, err)
	}
	return nil
}

// AgentAlive reports whether an agent's last heartbeat is within maxAge of now.
func AgentAlive(a Agent, now time.Time, maxAge time.Duration) bool {
	t, err := time.Parse("2006-01-02 15:04:05", a.HeartbeatTimestamp)
	if err != nil {
		return false
	}
	return now.Sub(t) <= maxAge
}
