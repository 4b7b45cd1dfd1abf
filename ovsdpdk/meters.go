package ovsdpdk

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/offlane/offlane/offload"
)

// MeterChannel is the meter table of the OpenFlow switches. OpenFlow meters cannot be
// part of a flow bundle, so they have their own calls.
type MeterChannel interface {
	// DumpMeters returns every meter of bridge (offlane's and foreign ones). Read-only.
	DumpMeters(ctx context.Context, bridge string) ([]InstalledMeter, error)
	// MeterMod adds (replacing nothing: the meter must not exist), modifies (the meter
	// must exist) or deletes (nothing happens if it does not exist) one meter. Deleting
	// a meter also deletes the flows that use it (OpenFlow's rule).
	MeterMod(ctx context.Context, bridge string, op MeterOp, m offload.Meter) error
}

// MeterOp is what a MeterMod does.
type MeterOp uint8

// Meter operations (ovs-ofctl commands).
const (
	MeterAdd MeterOp = iota + 1
	MeterModify
	MeterDelete
)

func (op MeterOp) String() string {
	switch op {
	case MeterAdd:
		return "add-meter"
	case MeterModify:
		return "mod-meter"
	case MeterDelete:
		return "del-meters"
	}
	return "meterop(" + strconv.Itoa(int(op)) + ")"
}

// InstalledMeter is a meter as the switch reports it.
type InstalledMeter struct {
	offload.Meter
	// Flags are the meter's flags as printed (e.g. "kbps burst stats").
	Flags string
	// Bands is the number of bands; offlane's meters have one drop band.
	Bands    int
	BandType string
}

// matches reports whether the installed meter is exactly the desired one.
func (im *InstalledMeter) matches(d offload.Meter) bool {
	return im.ID == d.ID && im.Kbps == d.Kbps && im.BurstKb == d.BurstKb && im.Flags == "kbps burst stats" &&
		im.Bands == 1 && im.BandType == "drop"
}

// ParseMeterDump parses `ovs-ofctl -O OpenFlow15 dump-meters` output:
//
//	meter=5 kbps burst stats bands=
//	type=drop rate=60000 burst_size=6000
func ParseMeterDump(r io.Reader, bridge string) ([]InstalledMeter, error) {
	var out []InstalledMeter
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "OFPST_") || strings.HasPrefix(line, "NXST_"):
		case strings.HasPrefix(line, "meter="):
			head, _, ok := strings.Cut(line, " bands=")
			if !ok && !strings.HasSuffix(line, "bands=") {
				return nil, fmt.Errorf("meter dump line %d: no bands: %q", n, line)
			}
			head = strings.TrimSuffix(head, " bands=")
			id, flags, _ := strings.Cut(strings.TrimPrefix(head, "meter="), " ")
			v, err := strconv.ParseUint(id, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("meter dump line %d: meter id %q", n, id)
			}
			out = append(out, InstalledMeter{Meter: offload.Meter{Bridge: bridge, ID: uint32(v)}, Flags: flags})
		case strings.HasPrefix(line, "type="):
			if len(out) == 0 {
				return nil, fmt.Errorf("meter dump line %d: a band before any meter", n)
			}
			m := &out[len(out)-1]
			m.Bands++
			for _, f := range strings.Fields(line) {
				k, v, _ := strings.Cut(f, "=")
				x, err := strconv.Atoi(v)
				switch k {
				case "type":
					m.BandType = v
					continue
				case "rate", "burst_size":
					if err != nil {
						return nil, fmt.Errorf("meter dump line %d: %s %q", n, k, v)
					}
				}
				if m.Bands > 1 {
					continue // only the first band's figures are compared
				}
				switch k {
				case "rate":
					m.Kbps = x
				case "burst_size":
					m.BurstKb = x
				}
			}
		default:
			return nil, fmt.Errorf("meter dump line %d: unexpected %q", n, line)
		}
	}
	return out, sc.Err()
}

// DumpMeters implements MeterChannel.
func (o *Ofctl) DumpMeters(ctx context.Context, bridge string) ([]InstalledMeter, error) {
	if err := validBridgeName(bridge); err != nil {
		return nil, err
	}
	out, err := o.run(ctx, "dump-meters", o.Target(bridge))
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	ms, err := ParseMeterDump(bytes.NewReader(out), bridge)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	return ms, nil
}

// MeterMod implements MeterChannel.
func (o *Ofctl) MeterMod(ctx context.Context, bridge string, op MeterOp, m offload.Meter) error {
	if err := validBridgeName(bridge); err != nil {
		return err
	}
	arg := m.Spec()
	if op == MeterDelete {
		arg = "meter=" + strconv.FormatUint(uint64(m.ID), 10)
	} else if m.Kbps <= 0 || m.BurstKb <= 0 {
		return fmt.Errorf("bridge %s: meter %d: rate %d kbit/s and burst %d kbit must be positive", bridge, m.ID, m.Kbps, m.BurstKb)
	}
	if m.ID == 0 {
		return fmt.Errorf("bridge %s: meter id 0 is not a meter", bridge)
	}
	if _, err := o.run(ctx, op.String(), o.Target(bridge), arg); err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	return nil
}

// run runs one ovs-ofctl -O OpenFlow15 command and returns its output.
func (o *Ofctl) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.bin, append([]string{"-O", "OpenFlow15"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", o.bin, args[0], err, firstLines(stderr.String(), 5))
	}
	return out, nil
}

// Meters programs offlane's OpenFlow meters (IDs in offload's meter range; other meters
// are foreign and left alone). A reconcile calls Prepare before the flow bundle that
// references the meters and Prune after it.
type Meters struct {
	ch  MeterChannel
	log *zap.Logger
}

// NewMeters returns the meter applier on ch.
func NewMeters(ch MeterChannel, log *zap.Logger) *Meters {
	if log == nil {
		log = zap.NewNop()
	}
	return &Meters{ch: ch, log: log.Named("meters")}
}

// MeterSync counts what a Prepare or Prune did.
type MeterSync struct {
	Added, Modified, Deleted, Unchanged int
}

// Changes is the number of meter mods sent.
func (s MeterSync) Changes() int { return s.Added + s.Modified + s.Deleted }

// DiffMeters is what turns the installed meters of one bridge into desired: meters to
// add, meters to modify and offlane meters to delete (foreign ones are never listed).
// Pure.
func DiffMeters(installed []InstalledMeter, desired []offload.Meter) (add, modify, del []offload.Meter) {
	have := make(map[uint32]*InstalledMeter, len(installed))
	for i := range installed {
		have[installed[i].ID] = &installed[i]
	}
	want := make(map[uint32]bool, len(desired))
	for _, d := range desired {
		want[d.ID] = true
		h := have[d.ID]
		switch {
		case h == nil:
			add = append(add, d)
		case !h.matches(d):
			modify = append(modify, d)
		}
	}
	for _, h := range installed {
		if !want[h.ID] && offload.IsOfflaneMeter(h.ID) {
			del = append(del, h.Meter)
		}
	}
	slices.SortFunc(del, func(a, b offload.Meter) int { return int(int64(a.ID) - int64(b.ID)) })
	return add, modify, del
}

func (m *Meters) check(bridges []string, desired []offload.Meter) (map[string][]offload.Meter, error) {
	by := make(map[string][]offload.Meter, len(bridges))
	for _, b := range bridges {
		if err := validBridgeName(b); err != nil {
			return nil, err
		}
		by[b] = nil
	}
	var errs []error
	seen := map[string]bool{}
	for _, d := range desired {
		key := d.Bridge + "/" + strconv.FormatUint(uint64(d.ID), 10)
		switch _, ok := by[d.Bridge]; {
		case !ok:
			errs = append(errs, fmt.Errorf("meter %d is for bridge %q, which this sync does not cover", d.ID, d.Bridge))
		case !offload.IsOfflaneMeter(d.ID):
			errs = append(errs, fmt.Errorf("meter %d on %s is outside offlane's meter range %#x/%#x", d.ID, d.Bridge, offload.MeterMarker, offload.MeterMask))
		case d.Kbps <= 0 || d.BurstKb <= 0:
			errs = append(errs, fmt.Errorf("meter %d on %s: rate %d kbit/s, burst %d kbit: both must be positive", d.ID, d.Bridge, d.Kbps, d.BurstKb))
		case seen[key]:
			errs = append(errs, fmt.Errorf("meter %d on %s listed twice", d.ID, d.Bridge))
		default:
			seen[key] = true
			by[d.Bridge] = append(by[d.Bridge], d)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("desired meters refused, nothing sent: %w", err)
	}
	return by, nil
}

// Prepare adds and modifies meters on bridges until every desired meter exists as
// wanted; it deletes nothing (flows may still use meters that are going away). Safe to
// retry.
func (m *Meters) Prepare(ctx context.Context, bridges []string, desired []offload.Meter) (MeterSync, error) {
	return m.sync(ctx, bridges, desired, false)
}

// Prune deletes offlane's meters on bridges that desired does not list (after the flow
// bundle that stopped using them), and repairs any desired meter that is missing or
// different. Safe to retry.
func (m *Meters) Prune(ctx context.Context, bridges []string, desired []offload.Meter) (MeterSync, error) {
	return m.sync(ctx, bridges, desired, true)
}

func (m *Meters) sync(ctx context.Context, bridges []string, desired []offload.Meter, prune bool) (MeterSync, error) {
	var st MeterSync
	by, err := m.check(bridges, desired)
	if err != nil {
		return st, err
	}
	for _, br := range bridges {
		installed, err := m.ch.DumpMeters(ctx, br)
		if err != nil {
			return st, fmt.Errorf("sync meters: %w", err)
		}
		add, mod, del := DiffMeters(installed, by[br])
		st.Unchanged += len(by[br]) - len(add) - len(mod)
		for _, d := range add {
			if err := m.ch.MeterMod(ctx, br, MeterAdd, d); err != nil {
				return st, fmt.Errorf("sync meters: %w", err)
			}
			st.Added++
		}
		for _, d := range mod {
			if err := m.ch.MeterMod(ctx, br, MeterModify, d); err != nil {
				return st, fmt.Errorf("sync meters: %w", err)
			}
			st.Modified++
		}
		if !prune {
			continue
		}
		for _, d := range del {
			if err := m.ch.MeterMod(ctx, br, MeterDelete, d); err != nil {
				return st, fmt.Errorf("sync meters: %w", err)
			}
			st.Deleted++
		}
	}
	if st.Changes() > 0 {
		m.log.Debug("meters synced", zap.Int("added", st.Added), zap.Int("modified", st.Modified), zap.Int("deleted", st.Deleted), zap.Bool("prune", prune))
	}
	return st, nil
}
