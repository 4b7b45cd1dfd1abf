package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestAgentCmdFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--node-config"},
		{[]string{"--node-config", "n.yaml", "--l3-backend", "ebpf"}, `--l3-backend "ebpf"`},
		{[]string{"--node-config", "n.yaml", "--metrics-listen", "9477"}, "--metrics-listen"},
		{[]string{"--node-config", "n.yaml", "--url", "ftp://server:9696"}, "--url"},
		{[]string{"--node-config", "n.yaml", "--url", "http://127.0.0.1:1", "--cacert", dir + "/missing.pem"}, "missing.pem"},
		{[]string{"--agent"}, "unknown flag: --agent"},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"agent", "--host", "h1", "--state-dir", dir}, c.args...)
		if code := run(args, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d (want %d), stderr %s", c.args, code, exitUsage, errb.String())
		}
		if !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: stderr %q does not mention %q", c.args, errb.String(), c.want)
		}
	}
}
