package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offlane/offlane/test/lab"
)

// TestLabAgentCommand runs `offlane serve` (token auth, no --agent) and `offlane agent
// --url` as two processes on a lab OVS: the agent lays the node out, registers with its
// VTEP (GET /v2.0/agents), binds a port created through the API; `offlane serve` stops
// cleanly on SIGTERM while the agent's watch stream is open, and the agent stops cleanly
// on SIGTERM.
func TestLabAgentCommand(t *testing.T) {
	lab.RequireOVS(t)
	o := lab.StartOVS(t, lab.Options{})
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("tok-admin: {project_id: admin, roles: [admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, "node.yaml")
	yaml := "ovsdb: " + o.Endpoint + "\ndatapath: netdev\nintegration_bridge: br-int\ntunnel:\n  local_ip: 192.0.2.1/24\n  types: [vxlan]\n"
	if err := os.WriteFile(node, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--auth", "token", "--tokens", tokens)

	cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
	cmd.Env = append(os.Environ(), "OFFLANE_SERVE_HELPER=1", "OFFLANE_SERVE_ARGS="+strings.Join([]string{"agent",
		"--url", srv.url, "--token", "tok-admin", "--node-config", node, "--host", "nodex", "--ovs-netns", o.NS,
		"--state-dir", filepath.Join(dir, "agent"), "--plan-file", filepath.Join(dir, "plan.json")}, "\x1f"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
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
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	api := func(method, path, body string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.url+path, strings.NewReader(body))
		req.Header.Set("X-Auth-Token", "tok-admin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; agent stderr:\n%s", what, stderr.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("the agent in GET /v2.0/agents", func() bool {
		var l struct {
			Agents []struct {
				Host           string         `json:"host"`
				Alive          bool           `json:"alive"`
				Configurations map[string]any `json:"configurations"`
			} `json:"agents"`
		}
		api("GET", "/v2.0/agents", "", &l)
		return len(l.Agents) == 1 && l.Agents[0].Host == "nodex" && l.Agents[0].Alive && l.Agents[0].Configurations["tunneling_ip"] == "192.0.2.1"
	})
	var nw struct {
		Network struct {
			ID string `json:"id"`
		} `json:"network"`
	}
	if code := api("POST", "/v2.0/networks", `{"network": {"name": "n", "project_id": "p"}}`, &nw); code != http.StatusCreated {
		t.Fatalf("create network: %d", code)
	}
	var pt struct {
		Port struct {
			ID string `json:"id"`
		} `json:"port"`
	}
	if code := api("POST", "/v2.0/ports", `{"port": {"network_id": "`+nw.Network.ID+`", "binding:host_id": "nodex", "project_id": "p"}}`, &pt); code != http.StatusCreated {
		t.Fatalf("create port: %d", code)
	}
	waitFor("the port bound by the agent process", func() bool {
		var p struct {
			Port map[string]any `json:"port"`
		}
		api("GET", "/v2.0/ports/"+pt.Port.ID, "", &p)
		d, _ := p.Port["binding:vif_details"].(map[string]any)
		return p.Port["binding:vif_type"] == "ovs" && p.Port["status"] == "DOWN" && d["bridge_name"] == "br-int"
	})
	if out := o.Vsctl(t, "br-exists", "br-int"); out != "" {
		t.Fatalf("br-exists: %q", out)
	}

	// The server stops cleanly with the agent's watch open: stop requires exit 0 and
	// "offlane: stopped", which a watch holding Shutdown past its 15 s deadline turns into
	// exit 1 ("shutdown: context deadline exceeded").
	srv.stop(t, syscall.SIGTERM)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := false
	timeout := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			done = !ok
			stopped = stopped || strings.Contains(l, "offlane: agent stopped")
		case <-timeout:
			t.Fatalf("the agent did not stop on SIGTERM: %s", stderr.String())
		}
	}
	if err := cmd.Wait(); err != nil || !stopped {
		t.Fatalf("agent after SIGTERM: exit %v, stopped line %v: %s", err, stopped, stderr.String())
	}
}

// TestLabAgentCommandRefusedToken: `offlane agent` with a token the server refuses for
// the agent endpoints (a project member's) exits 1 naming the fix, instead of retrying
// for ever.
func TestLabAgentCommandRefusedToken(t *testing.T) {
	lab.RequireOVS(t)
	o := lab.StartOVS(t, lab.Options{})
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("tok-member: {project_id: p, roles: [member]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(node, []byte("ovsdb: "+o.Endpoint+"\ndatapath: netdev\nintegration_bridge: br-int\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--auth", "token", "--tokens", tokens)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a bound, not a measurement
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestServeHelperProcess$")
	cmd.Env = append(os.Environ(), "OFFLANE_SERVE_HELPER=1", "OFFLANE_SERVE_ARGS="+strings.Join([]string{"agent",
		"--url", srv.url, "--token", "tok-member", "--node-config", node, "--host", "nodey", "--ovs-netns", o.NS,
		"--state-dir", filepath.Join(dir, "agent")}, "\x1f"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("agent with a member token: %v (want exit status 1 on its own); stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "admin token") || !strings.Contains(stderr.String(), "403") {
		t.Fatalf("the agent's error does not name the refusal and the fix:\n%s", stderr.String())
	}
	t.Logf("agent: %s", stderr.String())
	srv.stop(t, syscall.SIGTERM)
}
