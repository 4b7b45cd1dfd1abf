package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// persisted is what the agent keeps across restarts: the local VLAN of each network
// (which is also its conntrack zone and appears in every flow: a restart that renumbered
// them would rewrite every flow and drop connections) and the last revision it applied.
type persisted struct {
	Format     int               `json:"format"`
	Host       string            `json:"host"`
	Revision   int64             `json:"revision"`
	LocalVLANs map[string]uint16 `json:"local_vlans"`
}

const stateFormat = 1

// StateFileName is the agent's state file under Config.StateDir.
const StateFileName = "agent-state.json"

func loadPersisted(path, host string) (*persisted, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &persisted{Format: stateFormat, Host: host, LocalVLANs: map[string]uint16{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent state %s: %w", path, err)
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("agent state %s: %w (move it away to start afresh: flows are then renumbered once)", path, err)
	}
	if p.Format != stateFormat {
		return nil, fmt.Errorf("agent state %s: format %d, this agent reads %d", path, p.Format, stateFormat)
	}
	if p.Host != host {
		return nil, fmt.Errorf("agent state %s belongs to host %q, not %q: give each host its own --state-dir", path, p.Host, host)
	}
	if p.LocalVLANs == nil {
		p.LocalVLANs = map[string]uint16{}
	}
	return &p, nil
}

// save writes the state atomically (temporary file, fsync, rename).
func (p *persisted) save(path string) error {
	b, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".agent-state-*")
	if err != nil {
		return fmt.Errorf("agent state %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("agent state %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("agent state %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("agent state %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
