package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newServeCmd is a placeholder until its issue lands; the owner of this command replaces this file.
func newServeCmd(_ *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "serve",
		Short:  "(not implemented yet)",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("serve: not implemented yet")
		},
	}
}
