package sriov

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Spec is the wanted SR-IOV state of one PF.
type Spec struct {
	// PF names the PF: netdev, PCI address or devlink handle.
	PF string
	// NumVFs is the wanted number of VFs (≥ 0).
	NumVFs int
	// Mode is the wanted eswitch mode, ModeLegacy or ModeSwitchdev; "" keeps it.
	Mode string
	// VFDriver is VFDriverVFIO, VFDriverKernel or VFDriverKeep.
	VFDriver string
	// Force destroys or rebinds VFs even when they are in use.
	Force bool
}

// StepKind is what one configuration step does.
type StepKind string

// Step kinds, in the order a plan can hold them.
const (
	StepSetNumVFs    StepKind = "set-numvfs"
	StepSetMode      StepKind = "set-eswitch-mode"
	StepSetAutoprobe StepKind = "set-drivers-autoprobe"
	StepSetFeature   StepKind = "set-feature"
	StepBindVF       StepKind = "bind-vf"
)

// Step is one change to a PF. Plans are data: Configure executes them in order, and
// --dry-run prints them.
type Step struct {
	Kind StepKind `json:"kind"`
	// VF is the VF index for StepBindVF (-1 otherwise).
	VF int `json:"vf"`
	// Target is the netdev (StepSetFeature), the feature name is Name.
	Target string `json:"target,omitempty"`
	Name   string `json:"name,omitempty"`
	From   string `json:"from"`
	To     string `json:"to"`
	// Why explains the step.
	Why string `json:"why,omitempty"`
}

func (s Step) String() string {
	var what string
	switch s.Kind {
	case StepSetNumVFs:
		what = "sriov_numvfs"
	case StepSetMode:
		what = "eswitch mode"
	case StepSetAutoprobe:
		what = "sriov_drivers_autoprobe"
	case StepSetFeature:
		what = s.Target + " " + s.Name
	case StepBindVF:
		what = "VF " + strconv.Itoa(s.VF) + " driver"
	default:
		what = string(s.Kind)
	}
	out := fmt.Sprintf("%s: %s -> %s", what, orDash(s.From), orDash(s.To))
	if s.Why != "" {
		out += " (" + s.Why + ")"
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// planEnv is what planning needs beyond the PF: the VFs in use (index → reason) and
// whether vfio-pci is available.
type planEnv struct {
	inUse      map[int]string
	vfioLoaded bool
}

// validateSpec checks a spec on its own (before reading the system).
func validateSpec(s Spec) error {
	var errs []string
	if s.NumVFs < 0 {
		errs = append(errs, fmt.Sprintf("--num-vfs %d: must be 0 or more", s.NumVFs))
	}
	switch s.Mode {
	case "", ModeLegacy, ModeSwitchdev:
	default:
		errs = append(errs, fmt.Sprintf("--mode %q: want legacy or switchdev", s.Mode))
	}
	switch s.VFDriver {
	case VFDriverKeep, VFDriverVFIO, VFDriverKernel:
	default:
		errs = append(errs, fmt.Sprintf("--vf-driver %q: want vfio-pci or kernel", s.VFDriver))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

// plan computes the steps that take pf to s, in the order real NICs need: VFs are
// destroyed (sriov_numvfs 0) before the eswitch mode changes — mlx5 and ice refuse a
// mode change with VFs, and a changed VF count needs 0 first anyway — then the mode is
// set, then the VFs are created again; hw-tc-offload is turned on for switchdev; VF
// drivers are bound last. It refuses, without a step, what the device cannot do and VFs
// in use (unless s.Force). An empty plan means the PF is already as wanted.
func plan(pf *PF, s Spec, env planEnv) ([]Step, error) {
	if err := validateSpec(s); err != nil {
		return nil, err
	}
	dev := pf.Device.String()
	if pf.TotalVFs >= 0 && s.NumVFs > pf.TotalVFs {
		return nil, fmt.Errorf("%w: %s supports at most %d VFs (%s), asked for %d", ErrUnsupported, dev, pf.TotalVFs, pf.TotalVFsFrom, s.NumVFs)
	}
	mode := pf.EswitchMode
	if s.Mode != "" {
		if pf.EswitchMode == "" && s.Mode == ModeSwitchdev {
			return nil, fmt.Errorf("%w: %s (driver %s) has no devlink eswitch, so no switchdev mode (%s); switchdev needs a driver such as mlx5_core, ice, bnxt_en or nfp",
				ErrUnsupported, dev, orNone(pf.Driver), pf.EswitchErr)
		}
		if pf.EswitchMode != "" {
			mode = s.Mode
		}
	}
	if s.VFDriver != VFDriverKeep && !pf.IsPCI() {
		return nil, fmt.Errorf("%w: the VFs of %s are not PCI functions: --vf-driver applies to PCI VFs only", ErrUnsupported, dev)
	}
	if s.VFDriver == VFDriverVFIO && s.NumVFs > 0 && !env.vfioLoaded {
		return nil, fmt.Errorf("%w: vfio-pci is not loaded (no /sys/bus/pci/drivers/vfio-pci): run `modprobe vfio-pci` first", ErrUnsupported)
	}

	modeChange := mode != pf.EswitchMode
	recreate := modeChange || s.NumVFs != pf.NumVFs
	var steps []Step
	var busy []int // VFs in use that the plan would destroy or rebind

	if recreate && pf.NumVFs > 0 {
		for i := range pf.NumVFs {
			if _, ok := env.inUse[i]; ok {
				busy = append(busy, i)
			}
		}
		why := "the VF count changes only through 0"
		if modeChange {
			why = "the eswitch mode changes only without VFs"
		}
		steps = append(steps, Step{Kind: StepSetNumVFs, VF: -1, From: strconv.Itoa(pf.NumVFs), To: "0", Why: why})
	}
	if modeChange {
		steps = append(steps, Step{Kind: StepSetMode, VF: -1, From: pf.EswitchMode, To: mode})
	}
	if recreate && s.NumVFs > 0 && pf.DriversAutoprobe != nil {
		// vfio-pci VFs should not be probed by the network driver first (no netdevs to
		// tear down again); kernel VFs need autoprobe to get their driver.
		switch {
		case s.VFDriver == VFDriverVFIO && *pf.DriversAutoprobe:
			steps = append(steps, Step{Kind: StepSetAutoprobe, VF: -1, From: "1", To: "0", Why: "new VFs go to vfio-pci, not to " + orNone(pf.Driver)})
		case s.VFDriver == VFDriverKernel && !*pf.DriversAutoprobe:
			steps = append(steps, Step{Kind: StepSetAutoprobe, VF: -1, From: "0", To: "1", Why: "new VFs probe their kernel driver"})
		}
	}
	if recreate && s.NumVFs > 0 {
		steps = append(steps, Step{Kind: StepSetNumVFs, VF: -1, From: "0", To: strconv.Itoa(s.NumVFs)})
	}
	if mode == ModeSwitchdev && pf.Netdev != "" && (pf.HWTCOffload == nil || !*pf.HWTCOffload) {
		from := "off"
		if pf.HWTCOffload == nil {
			from = "unknown"
		}
		steps = append(steps, Step{Kind: StepSetFeature, VF: -1, Target: pf.Netdev, Name: "hw-tc-offload", From: from, To: "on", Why: "tc flower rules on the representors go to the NIC"})
	}
	// VF drivers.
	if s.VFDriver != VFDriverKeep && s.NumVFs > 0 {
		for i := range s.NumVFs {
			cur := ""
			if !recreate && i < len(pf.VFs) {
				cur = pf.VFs[i].Driver
			}
			switch {
			case s.VFDriver == VFDriverVFIO && cur != VFDriverVFIO:
				from := cur
				if recreate {
					from = "(new VF)"
				}
				steps = append(steps, Step{Kind: StepBindVF, VF: i, From: from, To: VFDriverVFIO})
			case s.VFDriver == VFDriverKernel && !recreate && (cur == "" || cur == VFDriverVFIO):
				steps = append(steps, Step{Kind: StepBindVF, VF: i, From: cur, To: VFDriverKernel})
			default:
				continue
			}
			if !recreate {
				if _, ok := env.inUse[i]; ok {
					busy = append(busy, i)
				}
			}
		}
	}
	if len(busy) > 0 && !s.Force {
		sort.Ints(busy)
		var why []string
		for _, i := range busy {
			why = append(why, fmt.Sprintf("VF %d: %s", i, env.inUse[i]))
		}
		return nil, fmt.Errorf("%w: %s: this change destroys or rebinds VFs that are in use (%s): detach them first, or pass --force", ErrInUse, dev, strings.Join(why, "; "))
	}
	return steps, nil
}
