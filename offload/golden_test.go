package offload

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// flowText is the flows as per-bridge add-flows files, concatenated with headers: the
// text the golden files hold.
func flowText(fs []Flow) string {
	var b strings.Builder
	br := ""
	for _, f := range fs {
		if f.Bridge != br {
			br = f.Bridge
			b.WriteString("# bridge " + br + "\n")
		}
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./offload -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from the compiled flows (go test -update rewrites it after review):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	w := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		w[l]++
	}
	var out []string
	for _, l := range strings.Split(got, "\n") {
		if w[l] > 0 {
			w[l]--
			continue
		}
		out = append(out, "+ "+l)
	}
	for _, l := range strings.Split(want, "\n") {
		if w[l] > 0 {
			w[l]--
			out = append(out, "- "+l)
		}
	}
	return strings.Join(out, "\n")
}
