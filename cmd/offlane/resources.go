package main

import "github.com/spf13/cobra"

// addResourceCmds adds the Neutron resource commands (network, subnet, port, ...).
// Placeholder until the tenant-model issue lands; its owner replaces this file.
func addResourceCmds(_ *cobra.Command, _ *globalOptions) {}
