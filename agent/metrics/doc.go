// Package metrics is the node agent's Prometheus instrumentation and health endpoints:
// the offlane_ metrics (tenant port counters and link state read from OVSDB at scrape
// time, datapath flow and PMD statistics, the planner's feature/backend decisions, the
// control plane's reconcile, OVSDB and OpenFlow latencies, build and NIC information)
// registered on an injected prometheus.Registerer, and the /metrics, /healthz and
// /readyz handlers. It reads the node only through the Sources the agent hands it and
// decides nothing; it does not run the agent or listen on a socket itself.
package metrics
