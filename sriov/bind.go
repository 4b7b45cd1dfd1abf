package sriov

import (
	"context"
	"fmt"
)

// BindVF binds a PCI VF to driver, or to its default kernel driver when driver is "":
// it sets driver_override (cleared for the default), unbinds the VF from its current
// driver and asks the PCI core to probe it again (drivers_probe), then waits until the
// VF is bound as wanted. Idempotent: a VF already on the wanted driver is left alone
// (its override is still corrected).
func (m *Manager) BindVF(ctx context.Context, vf VF, driver string) error {
	if vf.PCIAddress == "" {
		return fmt.Errorf("%w: VF %d is not a PCI function: it has no driver to bind", ErrUnsupported, vf.Index)
	}
	dev := "sys/bus/pci/devices/" + vf.PCIAddress
	if driver != "" && !m.isDir("sys/bus/pci/drivers/"+driver) {
		return fmt.Errorf("%w: VF %s: driver %s is not loaded (no /sys/bus/pci/drivers/%s): modprobe it first", ErrUnsupported, vf.PCIAddress, driver, driver)
	}
	// driver_override: the driver name, or a lone newline to clear it (the kernel
	// treats an empty write as clearing, "\n" is what `echo > driver_override` sends).
	override := []byte(driver)
	if driver == "" {
		override = []byte("\n")
	}
	if err := m.sys.WriteFile(dev+"/driver_override", override); err != nil {
		return fmt.Errorf("VF %s: write driver_override: %w", vf.PCIAddress, err)
	}
	cur := linkBase(m.sys, dev+"/driver")
	wanted := func(d string) bool {
		if driver == "" {
			return d != "" && d != VFDriverVFIO
		}
		return d == driver
	}
	if wanted(cur) {
		return nil
	}
	if cur != "" {
		if err := m.sys.WriteFile("sys/bus/pci/drivers/"+cur+"/unbind", []byte(vf.PCIAddress)); err != nil {
			return fmt.Errorf("VF %s: unbind from %s: %w", vf.PCIAddress, cur, err)
		}
	}
	if err := m.sys.WriteFile("sys/bus/pci/drivers_probe", []byte(vf.PCIAddress)); err != nil {
		return fmt.Errorf("VF %s: drivers_probe: %w", vf.PCIAddress, err)
	}
	return m.poll(ctx, func() (bool, string) {
		d := linkBase(m.sys, dev+"/driver")
		if wanted(d) {
			return true, ""
		}
		want := driver
		if want == "" {
			want = "its kernel driver"
		}
		return false, fmt.Sprintf("VF %s is on %s, want %s", vf.PCIAddress, orNone(d), want)
	})
}
