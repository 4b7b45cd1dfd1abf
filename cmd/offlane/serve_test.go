package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"

	"github.com/offlane/offlane/controlplane"
)

func TestServeFlagErrors(t *testing.T) {
	dir := t.TempDir()
	badTokens := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badTokens, []byte("tok: {project_id: p, roles: [superuser]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badConfig := filepath.Join(dir, "bad-config.yaml")
	if err := os.WriteFile(badConfig, []byte("vxlan_vni_ranges: ['9:1']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknownKey := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknownKey, []byte("vni_range: ['1:9']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth", "kerberos"}, `--auth "kerberos"`},
		{[]string{"--auth", "token"}, "--auth token needs --tokens"},
		{[]string{"--tokens", badTokens}, "--tokens is only used with --auth token"},
		{[]string{"--tls-cert", "x.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--listen", "9696"}, "--listen"},
		{[]string{"--auth", "token", "--tokens", badTokens}, `role "superuser"`},
		{[]string{"--auth", "token", "--tokens", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{[]string{"--config", badConfig}, "vxlan ranges"},
		{[]string{"--config", unknownKey}, "vni_range"},
		{[]string{"--tls-cert", badTokens, "--tls-key", badTokens}, "--tls-cert"},
		{[]string{"extra"}, "unknown command"},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"serve", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0"}, c.args...)
		if code := run(args, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d (want %d), stderr %s", c.args, code, exitUsage, errb.String())
		}
		if !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: stderr %q does not mention %q", c.args, errb.String(), c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data", controlplane.DBFileName)); err == nil {
		t.Errorf("a refused serve created the store")
	}
}

// TestServeHelperProcess is not a test: TestServeSignals runs the test binary again with
// this test selected to get a real `offlane serve` process it can signal.
func TestServeHelperProcess(t *testing.T) {
	if os.Getenv("OFFLANE_SERVE_HELPER") != "1" {
		t.Skip("helper process for TestServeSignals")
	}
	args := strings.Split(os.Getenv("OFFLANE_SERVE_ARGS"), "\x1f")
	os.Exit(run(args, os.Stdout, os.Stderr))
}

// serveProc is a running `offlane serve` child process.
type serveProc struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
	lines  chan string // stdout after the "serving" line
}

// startServe runs `offlane serve args...` as a child process (killed at cleanup if
// still running) and waits for the URL it prints.
func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
	cmd.Env = append(os.Environ(), "OFFLANE_SERVE_HELPER=1", "OFFLANE_SERVE_ARGS="+strings.Join(append([]string{"serve"}, args...), "\x1f"))
	p := &serveProc{cmd: cmd, stderr: &bytes.Buffer{}, lines: make(chan string, 16)}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	urlRE := regexp.MustCompile(`serving the Neutron API on (https?://\S+)`)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("serve exited before listening: %s", p.stderr)
			}
			if m := urlRE.FindStringSubmatch(l); m != nil {
				p.url = m[1]
				return p
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("serve did not start: %s", p.stderr)
		}
	}
}

// stop signals the process and expects a clean stop: "offlane: stopped", exit 0.
func (p *serveProc) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	sawStopped := false
	timeout := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-p.lines:
			if !ok {
				done = true
			}
			sawStopped = sawStopped || strings.Contains(l, "offlane: stopped")
		case <-timeout:
			t.Fatalf("no clean stop after %v: %s", sig, p.stderr)
		}
	}
	if err := p.cmd.Wait(); err != nil || !sawStopped {
		t.Fatalf("serve after %v: exit %v, stopped line %v: %s", sig, err, sawStopped, p.stderr)
	}
}

// TestServeSignals: a real serve process answers gophercloud with token auth and a
// segment config, stops cleanly on SIGTERM (exit 0, "stopped", store closed), and the
// data is there for the next process, which stops on SIGINT.
func TestServeSignals(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("tok-admin: {project_id: admin, roles: [admin]}\ntok-a: {project_id: proj-a, roles: [member]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("global_physnet_mtu: 9000\nvxlan_vni_ranges: ['7000:7009']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	p := startServe(t, "--listen", "127.0.0.1:0", "--data", data, "--auth", "token", "--tokens", tokens, "--config", cfg)
	url := p.url
	client := func(url string, hc *http.Client, tok string) *gophercloud.ServiceClient {
		pc := &gophercloud.ProviderClient{HTTPClient: *hc}
		pc.SetToken(tok)
		return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: url + "/", ResourceBase: url + "/v2.0/"}
	}
	var n struct {
		networks.Network
		ServeNetExt
	}
	err := networks.Create(t.Context(), client(url, http.DefaultClient, "tok-admin"), networks.CreateOpts{Name: "kept", ProjectID: "proj-a"}).ExtractInto(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n.MTU != 8950 || n.Type != "vxlan" || n.Seg != 7000 {
		t.Fatalf("config not applied: mtu %d type %s seg %d", n.MTU, n.Type, n.Seg)
	}
	if _, err := networks.List(client(url, http.DefaultClient, "wrong"), nil).AllPages(t.Context()); err == nil {
		t.Fatal("unknown token accepted")
	}
	p.stop(t, syscall.SIGTERM)

	// TLS, noauth, same data: the network survived; SIGINT stops it.
	cert, key, pool := selfSigned(t, dir)
	p = startServe(t, "--listen", "127.0.0.1:0", "--data", data, "--tls-cert", cert, "--tls-key", key)
	url = p.url
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("TLS serve printed %s", url)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	pages, err := networks.List(client(url, hc, ""), networks.ListOpts{Name: "kept"}).AllPages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := networks.ExtractNetworks(pages); len(l) != 1 || l[0].ID != n.ID {
		t.Fatalf("after restart: %+v", l)
	}
	p.stop(t, syscall.SIGINT)
}

// ServeNetExt holds the network attributes the serve test checks (exported: gophercloud
// decodes embedded structs by reflection).
type ServeNetExt struct {
	MTU  int    `json:"mtu"`
	Type string `json:"provider:network_type"`
	Seg  int    `json:"provider:segmentation_id"`
}

// selfSigned writes a certificate for 127.0.0.1 and returns its paths and a pool
// trusting it.
func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "offlane test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}
