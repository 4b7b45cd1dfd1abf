package lab

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stateDir holds one record per running lab: its owner and what to undo should the owner
// die without running its cleanups (a test binary killed by a timeout). Daemons die with
// it (Pdeathsig); namespaces, the hugetlbfs mount and a raised vm.nr_hugepages would
// not, so the next StartOVS sweeps them.
const stateDir = "/run/offlane-lab"

// labRecord is the JSON in stateDir/<id>.json.
type labRecord struct {
	PID       int    `json:"pid"`
	Start     string `json:"start"` // the owner's start time (field 22 of /proc/PID/stat): PIDs get reused
	ID        string `json:"id"`
	HugeMount string `json:"huge_mount,omitempty"`
	HugeOrig  uint64 `json:"huge_orig,omitempty"`
	HugeWant  uint64 `json:"huge_want,omitempty"` // nr_hugepages as this lab set it; 0 = not raised
}

func procStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces: count fields after its ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 19 {
			return f[19]
		}
	}
	return ""
}

// record writes (or rewrites) this lab's record.
func (o *OVS) record(update func(r *labRecord)) {
	if o.rec == nil {
		o.rec = &labRecord{PID: os.Getpid(), Start: procStart(os.Getpid()), ID: o.ID}
	}
	if update != nil {
		update(o.rec)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return // best effort: the sweep is a safety net
	}
	b, _ := json.Marshal(o.rec)
	_ = os.WriteFile(filepath.Join(stateDir, o.ID+".json"), b, 0o600)
}

func (o *OVS) dropRecord() { _ = os.Remove(filepath.Join(stateDir, o.ID+".json")) }

// sweep undoes what labs whose owner process is gone left behind. Records of labs that
// raised vm.nr_hugepages are handled only with hugepages set, which the caller does
// while holding the DPDK lock (no live lab is changing the pool then).
func sweep(t testing.TB, hugepages bool) {
	entries, _ := os.ReadDir(stateDir)
	for _, e := range entries {
		path := filepath.Join(stateDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var r labRecord
		if json.Unmarshal(b, &r) != nil || r.ID == "" {
			_ = os.Remove(path)
			continue
		}
		if st := procStart(r.PID); st != "" && st == r.Start {
			continue // its owner is alive
		}
		if r.HugeWant != 0 && !hugepages {
			continue // left for the next DPDK lab
		}
		var gone []string
		nss, _ := os.ReadDir("/run/netns")
		for _, ns := range nss {
			if strings.HasPrefix(ns.Name(), "ol"+r.ID+"-") {
				if _, err := runCmd(10*time.Second, nil, "ip", "netns", "del", ns.Name()); err == nil {
					gone = append(gone, ns.Name())
				}
			}
		}
		if r.HugeMount != "" {
			if m, _ := os.ReadFile("/proc/mounts"); strings.Contains(string(m), " "+r.HugeMount+" hugetlbfs") {
				unmount(r.HugeMount)
				gone = append(gone, "hugetlbfs "+r.HugeMount)
			}
		}
		if r.HugeWant != 0 {
			if cur, err := os.ReadFile(hugepagesSysctl); err == nil && strings.TrimSpace(string(cur)) == strconv.FormatUint(r.HugeWant, 10) {
				if os.WriteFile(hugepagesSysctl, []byte(strconv.FormatUint(r.HugeOrig, 10)), 0o644) == nil {
					gone = append(gone, "nr_hugepages "+strconv.FormatUint(r.HugeWant, 10)+"→"+strconv.FormatUint(r.HugeOrig, 10))
				}
			}
		}
		for _, s := range []string{"-ovs", "-vm"} {
			_ = os.RemoveAll(filepath.Join("/var/run/dpdk", "ol"+r.ID+s))
		}
		_ = os.Remove(path)
		if len(gone) > 0 {
			t.Logf("lab: swept what lab %s (pid %d, gone) left behind: %s", r.ID, r.PID, strings.Join(gone, ", "))
		}
	}
}
