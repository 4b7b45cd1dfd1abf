package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Exit codes shared by every command (documented in the README).
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (e.g. OVSDB unreachable, apply failed)
	exitUsage   = 2 // bad flags, arguments or input files: nothing was done
)

// usageError marks an error caused by the user's input, which exits with exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	verbose bool
	stdout  io.Writer
	stderr  io.Writer
}

// logger returns the process logger: warnings and errors on stderr, debug with -v.
func (g *globalOptions) logger() *zap.Logger {
	level := zapcore.WarnLevel
	if g.verbose {
		level = zapcore.DebugLevel
	}
	enc := zap.NewDevelopmentEncoderConfig()
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(g.stderr), level)
	return zap.New(core)
}

func newRootCmd(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:           "offlane",
		Short:         "Node-level vswitch controller for telco/NFV clouds",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "debug logging on stderr")
	root.AddCommand(
		newVersionCmd(g),
		newDetectCmd(g),
		newNodeCmd(g),
		newServeCmd(g),
		newAgentCmd(g),
		newSriovCmd(g),
		newExplainCmd(g),
	)
	addResourceCmds(root, g)
	return root
}

// run executes the command line and maps errors to exit codes.
func run(args []string, stdout, stderr io.Writer) int {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "offlane: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// isCobraUsage reports flag and argument errors raised by cobra itself.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand", "unknown command", "accepts ", "requires at least", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
