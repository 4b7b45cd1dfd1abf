package sriov

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Result is what Configure did.
type Result struct {
	// Before is the PF as read before the change, After as read back after it (nil for
	// a dry run).
	Before *PF `json:"before"`
	After  *PF `json:"after"`
	// Steps are the planned steps; for a real run, all of them were applied.
	Steps  []Step `json:"steps"`
	DryRun bool   `json:"dry_run"`
}

// Changed reports whether the PF needed changes.
func (r *Result) Changed() bool { return len(r.Steps) > 0 }

// Configure brings a PF to spec: it reads the PF, plans (refusing what the device cannot
// do and VFs in use), applies the steps in order and reads the PF back to check the
// result. Idempotent: a second call with the same spec plans nothing. With dryRun it
// only plans. Bad input and refusals change nothing. If a step fails after the VFs were
// destroyed, Configure tries to re-create the previous VF count and reports both.
func (m *Manager) Configure(ctx context.Context, spec Spec, dryRun bool) (*Result, error) {
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	pf, err := m.PF(ctx, spec.PF)
	if err != nil {
		return nil, err
	}
	env := planEnv{inUse: m.inUse(ctx, pf), vfioLoaded: m.isDir("sys/bus/pci/drivers/vfio-pci")}
	steps, err := plan(pf, spec, env)
	if err != nil {
		return nil, err
	}
	res := &Result{Before: pf, Steps: steps, DryRun: dryRun}
	if dryRun || len(steps) == 0 {
		if !dryRun {
			res.After = pf
		}
		return res, nil
	}
	log := m.log.With(zap.String("pf", pf.Device.String()))
	destroyed := false
	for i, st := range steps {
		log.Debug("apply", zap.Int("step", i+1), zap.Stringer("what", st))
		if err := m.apply(ctx, pf, st); err != nil {
			err = fmt.Errorf("%s: step %d of %d (%s): %w", pf.Device, i+1, len(steps), st, err)
			if destroyed && pf.NumVFs > 0 {
				if rerr := m.writeNumVFs(ctx, pf, pf.NumVFs); rerr != nil {
					err = errors.Join(err, fmt.Errorf("%s: restoring %d VFs also failed: %w", pf.Device, pf.NumVFs, rerr))
				} else {
					err = fmt.Errorf("%w (the previous %d VFs were re-created)", err, pf.NumVFs)
				}
			}
			return res, err
		}
		switch {
		case st.Kind == StepSetNumVFs && st.To == "0":
			destroyed = true
		case st.Kind == StepSetNumVFs:
			destroyed = false
		}
	}
	after, err := m.verify(ctx, pf.Device, spec)
	res.After = after
	if err != nil {
		return res, err
	}
	return res, nil
}

// apply executes one step.
func (m *Manager) apply(ctx context.Context, pf *PF, st Step) error {
	switch st.Kind {
	case StepSetNumVFs:
		n, err := strconv.Atoi(st.To)
		if err != nil {
			return err
		}
		return m.writeNumVFs(ctx, pf, n)
	case StepSetMode:
		return m.dl.SetEswitchMode(ctx, pf.Device, st.To)
	case StepSetAutoprobe:
		return m.sys.WriteFile(pf.DevDir+"/sriov_drivers_autoprobe", []byte(st.To))
	case StepSetFeature:
		return m.eth.SetFeature(ctx, st.Target, st.Name, st.To == "on")
	case StepBindVF:
		vf, err := m.waitVF(ctx, pf, st.VF)
		if err != nil {
			return err
		}
		driver := st.To
		if driver == VFDriverKernel {
			driver = ""
		}
		return m.BindVF(ctx, vf, driver)
	}
	return fmt.Errorf("unknown step kind %q", st.Kind)
}

// writeNumVFs writes sriov_numvfs and waits until the device shows n VFs (PCI: n virtfn
// links).
func (m *Manager) writeNumVFs(ctx context.Context, pf *PF, n int) error {
	attr := pf.DevDir + "/sriov_numvfs"
	if err := m.sys.WriteFile(attr, []byte(strconv.Itoa(n))); err != nil {
		return fmt.Errorf("write %d to /%s: %w", n, attr, err)
	}
	return m.poll(ctx, func() (bool, string) {
		got, err := readInt(m.sys, attr)
		if err != nil {
			return false, err.Error()
		}
		if got != n {
			return false, fmt.Sprintf("sriov_numvfs reads %d", got)
		}
		if pf.IsPCI() {
			if vfs := m.pciVFs(pf.DevDir); len(vfs) != n {
				return false, fmt.Sprintf("%d virtfn links", len(vfs))
			}
		}
		return true, ""
	})
}

// waitVF waits for VF idx of pf to exist as a PCI function and returns it.
func (m *Manager) waitVF(ctx context.Context, pf *PF, idx int) (VF, error) {
	var vf VF
	err := m.poll(ctx, func() (bool, string) {
		for _, v := range m.pciVFs(pf.DevDir) {
			if v.Index == idx {
				vf = v
				return true, ""
			}
		}
		return false, fmt.Sprintf("no virtfn%d", idx)
	})
	return vf, err
}

// poll calls cond until it is true, ctx ends or the settle time passes.
func (m *Manager) poll(ctx context.Context, cond func() (bool, string)) error {
	deadline := time.Now().Add(m.settle)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not reached after %v: %s", m.settle, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// verify reads the PF back until it matches spec (VF drivers probe asynchronously).
func (m *Manager) verify(ctx context.Context, dev Device, spec Spec) (*PF, error) {
	var pf *PF
	err := m.poll(ctx, func() (bool, string) {
		dir, err := resolve(m.sys, "sys/bus/"+dev.Bus+"/devices/"+dev.Name)
		if err != nil {
			return false, err.Error()
		}
		if pf, err = m.readPF(ctx, dev, dir, nil); err != nil {
			return false, err.Error()
		}
		if d := mismatch(pf, spec); d != "" {
			return false, d
		}
		return true, ""
	})
	if err != nil {
		return pf, fmt.Errorf("%s: after configuring, the device does not show the wanted state: %w", dev, err)
	}
	return pf, nil
}

// mismatch says how pf differs from spec, "" when it does not.
func mismatch(pf *PF, spec Spec) string {
	var d []string
	if pf.NumVFs != spec.NumVFs {
		d = append(d, fmt.Sprintf("%d VFs, want %d", pf.NumVFs, spec.NumVFs))
	}
	if spec.Mode != "" && pf.EswitchMode != "" && pf.EswitchMode != spec.Mode {
		d = append(d, fmt.Sprintf("eswitch mode %s, want %s", pf.EswitchMode, spec.Mode))
	}
	if (spec.Mode == ModeSwitchdev || (spec.Mode == "" && pf.EswitchMode == ModeSwitchdev)) && pf.Netdev != "" && (pf.HWTCOffload == nil || !*pf.HWTCOffload) {
		d = append(d, "hw-tc-offload is not on")
	}
	if pf.IsPCI() && spec.VFDriver != VFDriverKeep {
		if len(pf.VFs) != spec.NumVFs {
			d = append(d, fmt.Sprintf("%d VF functions, want %d", len(pf.VFs), spec.NumVFs))
		}
		for _, vf := range pf.VFs {
			switch {
			case spec.VFDriver == VFDriverVFIO && vf.Driver != VFDriverVFIO:
				d = append(d, fmt.Sprintf("VF %d on %s, want vfio-pci", vf.Index, orNone(vf.Driver)))
			case spec.VFDriver == VFDriverKernel && (vf.Driver == "" || vf.Driver == VFDriverVFIO):
				d = append(d, fmt.Sprintf("VF %d on %s, want its kernel driver", vf.Index, orNone(vf.Driver)))
			}
		}
	}
	return strings.Join(d, "; ")
}
