package ovsdpdk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/offlane/offlane/hwdetect"
)

// NodeConfig is a node's desired OVS layout and settings, as written in node.yaml. The
// YAML keys are the stable interface documented in the README ("offlane node").
type NodeConfig struct {
	// OVSDB is the ovsdb-server endpoint: unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT.
	OVSDB string     `yaml:"ovsdb"`
	TLS   *TLSConfig `yaml:"tls"` // client key, certificate and CA for ssl:
	// Datapath is the bridges' datapath_type: netdev (userspace / DPDK) or system (kernel).
	Datapath string      `yaml:"datapath"`
	DPDK     *DPDKConfig `yaml:"dpdk"`
	// HWOffload sets other_config:hw-offload; nil leaves it alone.
	HWOffload *bool `yaml:"hw_offload"`
	// TCPolicy sets other_config:tc-policy (skip_sw | skip_hw | none) with hw_offload.
	TCPolicy string `yaml:"tc_policy"`
	// UserspaceTSO sets other_config:userspace-tso-enable; nil leaves it alone.
	UserspaceTSO       *bool              `yaml:"userspace_tso"`
	IntegrationBridge  string             `yaml:"integration_bridge"`
	ExternalBridge     string             `yaml:"external_bridge"`
	Physnets           map[string]Physnet `yaml:"physnets"`
	Tunnel             *TunnelConfig      `yaml:"tunnel"`
	VhostUserSocketDir string             `yaml:"vhostuser_socket_dir"`
	// L3Backend is where routers run: auto (default: openflow when the OVS datapath can
	// do conntrack NAT, else nftables), openflow or nftables. Recorded in OVSDB
	// (external_ids:offlane-l3-backend) for the agent's planner.
	L3Backend string `yaml:"l3_backend"`
}

// TLSConfig names the PEM files for an ssl: OVSDB endpoint.
type TLSConfig struct {
	PrivateKey  string `yaml:"private_key"`
	Certificate string `yaml:"certificate"`
	CACert      string `yaml:"ca_cert"`
}

// DPDKConfig is the OVS-DPDK part of a node (datapath netdev only).
type DPDKConfig struct {
	Enabled   bool      `yaml:"enabled"`
	SocketMem SocketMem `yaml:"socket_mem"` // auto | MB per NUMA node
	// SocketLimit caps the hugepage memory OVS may take per NUMA node
	// (other_config:dpdk-socket-limit); auto = socket_mem. Without it OVS grows into
	// every free hugepage when it sizes its mempools, and VMs then find none.
	SocketLimit SocketMem `yaml:"socket_limit"`
	PMDCPUs     CPUSpec   `yaml:"pmd_cpus"`   // auto | CPU list
	LcoreCPUs   CPUSpec   `yaml:"lcore_cpus"` // auto | CPU list
	Extra       string    `yaml:"extra"`      // other_config:dpdk-extra, passed through
	// HugepageDir sets other_config:dpdk-hugepage-dir ("" leaves it alone).
	HugepageDir string `yaml:"hugepage_dir"`
	// PMDMaxSleep sets other_config:pmd-maxsleep in µs (nil leaves it alone).
	PMDMaxSleep *int `yaml:"pmd_maxsleep"`
}

// Physnet is a flat / VLAN provider network: its bridge and optional uplink.
type Physnet struct {
	Bridge    string `yaml:"bridge"`
	Interface string `yaml:"interface"` // uplink port name; optional
	// Devargs makes the uplink a DPDK port (type dpdk, options:dpdk-devargs).
	Devargs string `yaml:"devargs"`
}

// TunnelConfig is the overlay: the tunnel bridge and its flow-based tunnel ports.
type TunnelConfig struct {
	LocalIP string   `yaml:"local_ip"` // this node's tunnel endpoint (an IP; a CIDR's address is used)
	Bridge  string   `yaml:"bridge"`
	Types   []string `yaml:"types"` // vxlan | geneve | gre
}

// SocketMem is dpdk.socket_mem or dpdk.socket_limit: "auto" or MB of hugepage memory per
// NUMA node.
type SocketMem struct {
	Auto bool
	MB   []int // per NUMA node; nil when Auto or unset
}

// IsSet reports whether the key was given.
func (s SocketMem) IsSet() bool { return s.Auto || s.MB != nil }

// UnmarshalYAML accepts auto, a list of integers, or a single integer (one NUMA node).
func (s *SocketMem) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value == "auto" {
			*s = SocketMem{Auto: true}
			return nil
		}
		if v, err := strconv.Atoi(n.Value); err == nil && n.Tag == "!!int" {
			*s = SocketMem{MB: []int{v}}
			return nil
		}
	case yaml.SequenceNode:
		mb := make([]int, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := strconv.Atoi(c.Value)
			if c.Kind != yaml.ScalarNode || err != nil {
				return &ConfigError{Line: c.Line, col: c.Column, Msg: fmt.Sprintf("%s is not a number of MB", describeNode(c)), Fix: "give MB per NUMA node, e.g. [1024, 0]"}
			}
			mb = append(mb, v)
		}
		*s = SocketMem{MB: mb}
		return nil
	}
	return &ConfigError{Line: n.Line, col: n.Column, Msg: fmt.Sprintf("%s is neither auto nor a list", describeNode(n)), Fix: "write auto or MB per NUMA node, e.g. [1024, 0]"}
}

// CPUSpec is a CPU set in config: "auto" or a list such as "2,3" or "2-5,8".
type CPUSpec struct {
	Auto bool
	CPUs []int // sorted, unique; nil when Auto or unset
}

// IsSet reports whether the key was given.
func (c CPUSpec) IsSet() bool { return c.Auto || c.CPUs != nil }

// UnmarshalYAML accepts auto, a CPU list string, or a single integer.
func (c *CPUSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &ConfigError{Line: n.Line, col: n.Column, Msg: describeNode(n) + " is not a CPU list", Fix: `write auto or a CPU list such as "2,3" or "2-5"`}
	}
	if n.Value == "auto" {
		*c = CPUSpec{Auto: true}
		return nil
	}
	cpus, err := ParseCPUList(n.Value)
	if err != nil {
		return &ConfigError{Line: n.Line, col: n.Column, Msg: err.Error(), Fix: `write auto or a CPU list such as "2,3" or "2-5"`}
	}
	*c = CPUSpec{CPUs: cpus}
	return nil
}

// ParseCPUList parses a CPU list of a node config in the kernel's format ("0-3,8,10-11")
// with hwdetect.ParseCPUList; unlike a sysfs file, a config value may not be empty.
func ParseCPUList(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty CPU list")
	}
	return hwdetect.ParseCPUList(s)
}

// ConfigError is one problem in a node config: the key (dotted path), the line when
// known, what is wrong and how to fix it.
type ConfigError struct {
	File string
	Key  string
	Line int
	Msg  string
	Fix  string
	col  int // column of the offending value, to find its key in flow-style YAML
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Fix != "" {
		b.WriteString(": ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// ParseNodeConfig decodes node.yaml strictly: an unknown key, a wrong type or a second
// document is an error naming the key (with its line). file names the source in errors.
// It applies no defaults and does not validate values (see Validate).
func ParseNodeConfig(file string, r io.Reader) (*NodeConfig, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ConfigError{File: file, Msg: "empty config", Fix: "describe the node, see `offlane node --help` or the README"}
		}
		return nil, &ConfigError{File: file, Msg: yamlMsg(err), Fix: "fix the YAML syntax"}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ConfigError{File: file, Line: extra.Line, Msg: "more than one YAML document", Fix: "keep one node config per file"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, &ConfigError{File: file, Line: root.Line, Msg: "the config is not a mapping of keys", Fix: "start with keys such as `datapath: netdev`"}
	}
	var errs []error
	checkKeys(root, reflect.TypeOf(NodeConfig{}), "", &errs)
	if len(errs) > 0 {
		for _, e := range errs {
			var ce *ConfigError
			if errors.As(e, &ce) {
				ce.File = file
			}
		}
		return nil, errors.Join(errs...)
	}
	var cfg NodeConfig
	if err := root.Decode(&cfg); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = file
			if ce.Key == "" {
				ce.Key = keyAt(root, ce.Line, ce.col)
			}
			return nil, ce
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var out []error
			for _, m := range te.Errors {
				ce := &ConfigError{File: file, Msg: m, Fix: "give a value of the documented type"}
				var line int
				if _, err := fmt.Sscanf(m, "line %d:", &line); err == nil {
					ce.Line = line
					ce.Key = keyAt(root, line, 0)
					_, ce.Msg, _ = strings.Cut(m, ": ")
				}
				out = append(out, ce)
			}
			return nil, errors.Join(out...)
		}
		return nil, &ConfigError{File: file, Msg: err.Error()}
	}
	return &cfg, nil
}

func yamlMsg(err error) string { return strings.TrimPrefix(err.Error(), "yaml: ") }

// checkKeys walks a mapping node against a struct type's yaml tags and reports unknown
// keys with their dotted path and line, suggesting the nearest known key.
func checkKeys(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	if n.Kind != yaml.MappingNode {
		return
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = f.Type
		names = append(names, tag)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := joinKey(path, k.Value)
		if seen[k.Value] {
			*errs = append(*errs, &ConfigError{Key: key, Line: k.Line, Msg: "given twice", Fix: "keep one"})
			continue
		}
		seen[k.Value] = true
		ft, ok := fields[k.Value]
		if !ok {
			fix := "remove it"
			if s := nearest(k.Value, names); s != "" {
				fix = fmt.Sprintf("did you mean %s? (known keys: %s)", joinKey(path, s), strings.Join(names, ", "))
			} else {
				fix = fmt.Sprintf("remove it (known keys: %s)", strings.Join(names, ", "))
			}
			*errs = append(*errs, &ConfigError{Key: key, Line: k.Line, Msg: "unknown key", Fix: fix})
			continue
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && v.Kind == yaml.MappingNode && !hasUnmarshaler(ft):
			checkKeys(v, ft, key, errs)
		case ft.Kind() == reflect.Map && v.Kind == yaml.MappingNode:
			et := ft.Elem()
			if et.Kind() == reflect.Struct {
				for j := 0; j+1 < len(v.Content); j += 2 {
					checkKeys(v.Content[j+1], et, joinKey(key, v.Content[j].Value), errs)
				}
			}
		}
	}
}

func hasUnmarshaler(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem())
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// keyAt finds the dotted key whose value (or one of whose list items) is at line and,
// when col > 0, column: errors raised by a value's UnmarshalYAML do not know their key.
// Without a column the shallowest key on the line wins.
func keyAt(n *yaml.Node, line, col int) string {
	at := func(v *yaml.Node) bool { return v.Line == line && (col == 0 || v.Column == col) }
	var walk func(n *yaml.Node, path string) string
	walk = func(n *yaml.Node, path string) string {
		if n.Kind != yaml.MappingNode {
			return ""
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := joinKey(path, k.Value)
			if at(v) && (col > 0 || v.Kind != yaml.MappingNode) {
				return key
			}
			if v.Kind == yaml.SequenceNode {
				for _, c := range v.Content {
					if at(c) {
						return key
					}
				}
			}
			if s := walk(v, key); s != "" {
				return s
			}
		}
		return ""
	}
	return walk(n, "")
}

// describeNode names a YAML value for an error message.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// nearest returns the candidate closest to s by edit distance, if close enough.
func nearest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= 3 || (len(s) > 3 && strings.Contains(best, s)) {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
