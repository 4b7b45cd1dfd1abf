// Package agent is offlane's node agent: it watches the desired state (the tenant model
// in the store), builds this node's intent (offload.Build), plans it against the node's
// capabilities (offload.PlanNode), realises what lives outside OVS (router and DHCP
// namespaces), compiles the flows incrementally and applies them through the OVS
// backend by diff, then writes each bound port's status and binding details back. It
// never flushes: a restart reads what is installed and converges by diff.
package agent
