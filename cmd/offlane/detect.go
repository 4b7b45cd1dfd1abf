package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newDetectCmd is a placeholder until its issue lands; the owner of this command replaces this file.
func newDetectCmd(_ *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "detect",
		Short:  "(not implemented yet)",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("detect: not implemented yet")
		},
	}
}
