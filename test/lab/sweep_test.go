package lab

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestLabSweepsDeadLabs: what a lab whose test binary was killed left behind (here a
// namespace) is removed by the next lab that starts; a live lab's record is kept.
func TestLabSweepsDeadLabs(t *testing.T) {
	RequireOVS(t)
	dead, live := newID(), newID()
	ns := "ol" + dead + "-vm1"
	mustRun(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _, _ = runCmd(10*time.Second, nil, "ip", "netns", "del", ns) })
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(r labRecord) string {
		p := filepath.Join(stateDir, r.ID+".json")
		b, _ := json.Marshal(r)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(p) })
		return p
	}
	// The dead owner's start time cannot match even if its PID was reused meanwhile.
	deadRec := write(labRecord{PID: gone.Process.Pid, Start: "dead", ID: dead})
	liveRec := write(labRecord{PID: os.Getpid(), Start: procStart(os.Getpid()), ID: live})

	StartOVS(t, Options{DBOnly: true})
	if _, err := os.Stat("/run/netns/" + ns); err == nil {
		t.Errorf("namespace %s of a dead lab not swept", ns)
	}
	if _, err := os.Stat(deadRec); err == nil {
		t.Error("dead lab's record kept")
	}
	if _, err := os.Stat(liveRec); err != nil {
		t.Errorf("live lab's record removed: %v", err)
	}
}
