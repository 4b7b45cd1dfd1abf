// Command offlane is the node-level vswitch controller's one binary: detection, node
// provisioning, the Neutron-compatible API server, the agent and the resource CLI.
// This package only wires components together; the logic lives in the domain packages.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
