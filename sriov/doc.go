// Package sriov manages SR-IOV NICs: PF/VF lifecycle, eswitch mode over devlink, VF
// settings, driver binding, the representor identity registry and tc flower programming.
// It does not decide which rules a port needs: that is offload's job.
package sriov
