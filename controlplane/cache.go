package controlplane

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
)

// decodeCache keeps decoded networks and subnets keyed by their stored bytes: every port
// create reads its network and subnets, and decoding them costs more than the rest of
// the create. An entry is used only when the stored value is byte-for-byte the cached
// one, so the cache can never serve stale data; callers get their own copy.
type decodeCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	raw []byte
	obj any
}

const decodeCacheMax = 4096

func newDecodeCache() *decodeCache { return &decodeCache{entries: map[string]cacheEntry{}} }

func (c *decodeCache) get(key string, raw []byte) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !bytes.Equal(e.raw, raw) {
		return nil, false
	}
	return e.obj, true
}

func (c *decodeCache) put(key string, raw []byte, obj any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= decodeCacheMax {
		for k := range c.entries { // drop an arbitrary entry
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = cacheEntry{raw: bytes.Clone(raw), obj: obj}
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func (n *Network) clone() *Network {
	c := *n
	c.Subnets = slices.Clone(n.Subnets)
	c.AvailabilityZoneHints = slices.Clone(n.AvailabilityZoneHints)
	c.AvailabilityZones = slices.Clone(n.AvailabilityZones)
	c.Tags = slices.Clone(n.Tags)
	c.PhysicalNetwork = clonePtr(n.PhysicalNetwork)
	c.SegmentationID = clonePtr(n.SegmentationID)
	c.QoSPolicyID = clonePtr(n.QoSPolicyID)
	return &c
}

func (s *Subnet) clone() *Subnet {
	c := *s
	c.GatewayIP = clonePtr(s.GatewayIP)
	c.AllocationPools = slices.Clone(s.AllocationPools)
	c.DNSNameservers = slices.Clone(s.DNSNameservers)
	c.HostRoutes = slices.Clone(s.HostRoutes)
	c.IPv6AddressMode = clonePtr(s.IPv6AddressMode)
	c.IPv6RAMode = clonePtr(s.IPv6RAMode)
	c.SubnetPoolID = clonePtr(s.SubnetPoolID)
	c.ServiceTypes = slices.Clone(s.ServiceTypes)
	c.Tags = slices.Clone(s.Tags)
	return &c
}

// getNetwork reads a network through the cache; nf is the error when it is missing.
func (s *Server) getNetwork(tx ReadTx, id string, nf *apiError) (*Network, error) {
	v, err := tx.Get(KindNetwork, id)
	if err != nil {
		if nf != nil {
			return nil, nf
		}
		return nil, err
	}
	key := KindNetwork + "/" + id
	if o, ok := s.cache.get(key, v); ok {
		return o.(*Network).clone(), nil
	}
	var n Network
	if err := json.Unmarshal(v, &n); err != nil {
		return nil, err
	}
	s.cache.put(key, v, n.clone())
	return &n, nil
}

// getSubnet reads a subnet through the cache.
func (s *Server) getSubnet(tx ReadTx, id string, nf *apiError) (*Subnet, error) {
	v, err := tx.Get(KindSubnet, id)
	if err != nil {
		if nf != nil {
			return nil, nf
		}
		return nil, err
	}
	key := KindSubnet + "/" + id
	if o, ok := s.cache.get(key, v); ok {
		return o.(*Subnet).clone(), nil
	}
	var sn Subnet
	if err := json.Unmarshal(v, &sn); err != nil {
		return nil, err
	}
	s.cache.put(key, v, sn.clone())
	return &sn, nil
}
