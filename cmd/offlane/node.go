package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newNodeCmd is a placeholder until its issue lands; the owner of this command replaces this file.
func newNodeCmd(_ *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "node",
		Short:  "(not implemented yet)",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("node: not implemented yet")
		},
	}
}
