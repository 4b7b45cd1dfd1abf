package ovsdpdk_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestLabRemoteEndpoints: the tcp: and ssl: endpoints of a node config work against a
// real ovsdb-server on loopback; ssl: with mutual certificates from a throwaway CA
// (no host names, as ovs-pki makes them); a client with another CA is refused.
func TestLabRemoteEndpoints(t *testing.T) {
	dir := t.TempDir()
	p, other := newPKI(t, dir, "ovs"), newPKI(t, dir, "other")
	tcpPort, sslPort := freeLoopbackPort(t), freeLoopbackPort(t)
	o := lab.StartOVS(t, lab.Options{DBOnly: true, ServerArgs: []string{
		fmt.Sprintf("--remote=ptcp:%d:127.0.0.1", tcpPort), fmt.Sprintf("--remote=pssl:%d:127.0.0.1", sslPort),
		"--private-key=" + p.ServerKey, "--certificate=" + p.ServerCert, "--ca-cert=" + p.CACert}})
	ctx := ctxT(t, 60*time.Second)
	waitListen := func(port int) {
		waitFor(t, 10*time.Second, fmt.Sprintf("ovsdb-server listens on %d", port), func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	waitListen(tcpPort)
	waitListen(sslPort)

	yaml := "datapath: netdev\ntunnel: {local_ip: 10.99.0.1, types: [geneve]}\n"
	// tcp: apply; the unix-socket view (ovsdb-client) sees the bridges.
	cfg := parseCfg(t, fmt.Sprintf("ovsdb: tcp:127.0.0.1:%d\n%s", tcpPort, yaml))
	spec, err := ovsdpdk.Resolve(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: spec.Config.OVSDB})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res, err := c.ApplyNode(ctx, ovsdpdk.NodeLayout(spec), ovsdpdk.ApplyOptions{}); err != nil || !res.Transacted {
		t.Fatalf("apply over tcp: %v", err)
	}
	if row(t, o, "Bridge", "br-tun") == nil {
		t.Fatal("br-tun not in the database after apply over tcp")
	}

	// ssl: the same config is already applied: plan over ssl is empty.
	cfg = parseCfg(t, fmt.Sprintf("ovsdb: ssl:127.0.0.1:%d\ntls: {private_key: %s, certificate: %s, ca_cert: %s}\n%s",
		sslPort, p.ClientKey, p.ClientCert, p.CACert, yaml))
	spec, err = ovsdpdk.Resolve(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := ovsdpdk.TLSFromFiles(cfg.TLS.PrivateKey, cfg.TLS.Certificate, cfg.TLS.CACert)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: spec.Config.OVSDB, TLS: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	plan, err := cs.PlanNode(ctx, ovsdpdk.NodeLayout(spec))
	if err != nil || !plan.Empty() {
		t.Fatalf("plan over ssl: %v %v", err, plan)
	}
	info, err := ovsdpdk.NewProber(spec.Config.OVSDB, ovsdpdk.WithProberTLS(tlsConf)).ProbeOVS(ctx)
	if err != nil || !info.Reachable {
		t.Fatalf("probe over ssl: %+v %v", info, err)
	}

	// A client whose certificates come from another CA does not get in.
	bad, err := ovsdpdk.TLSFromFiles(other.ClientKey, other.ClientCert, other.CACert)
	if err != nil {
		t.Fatal(err)
	}
	short := ctxT(t, 3*time.Second)
	if c, err := ovsdpdk.Connect(short, ovsdpdk.Options{Endpoint: spec.Config.OVSDB, TLS: bad, ConnectTimeout: 2 * time.Second}); err == nil {
		c.Close()
		t.Fatal("connected with another CA's certificates")
	} else if !strings.Contains(err.Error(), "connect to ovsdb-server") {
		t.Errorf("error %v", err)
	}
}

func parseCfg(t *testing.T, y string) *ovsdpdk.NodeConfig {
	t.Helper()
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
