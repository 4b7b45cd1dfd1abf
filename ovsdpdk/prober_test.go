package ovsdpdk_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/client"

	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/ovsdpdk/vswitchd"
	"github.com/offlane/offlane/test/lab"
)

func TestProberReadsOpenvSwitchRow(t *testing.T) {
	ep := lab.MemOVSDB(t)
	ctx := ctxT(t, 10*time.Second)
	// Fill the row as ovs-vswitchd and ovs-ctl would.
	dbModel, _ := vswitchd.FullDatabaseModel()
	raw, err := client.NewOVSDBClient(dbModel, client.WithEndpoint(ep))
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ver, dbv, dpdkv := "3.1.0", "8.3.1", "DPDK 22.11.4"
	ops, err := raw.Create(&vswitchd.OpenvSwitch{OVSVersion: &ver, DbVersion: &dbv, DpdkVersion: &dpdkv, DpdkInitialized: true,
		DatapathTypes: []string{"system", "netdev"}, IfaceTypes: []string{"vxlan", "dpdkvhostuserclient", "dpdk"},
		OtherConfig: map[string]string{"hw-offload": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Transact(ctx, ops...); err != nil {
		t.Fatal(err)
	}
	info, err := ovsdpdk.NewProber(ep).ProbeOVS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%+v", struct {
		R        bool
		V, DB, D string
		DT, IT   []string
		Init, HW bool
	}{true, "3.1.0", "8.3.1", "DPDK 22.11.4", []string{"netdev", "system"}, []string{"dpdk", "dpdkvhostuserclient", "vxlan"}, true, true})
	got := fmt.Sprintf("%+v", struct {
		R        bool
		V, DB, D string
		DT, IT   []string
		Init, HW bool
	}{info.Reachable, info.Version, info.DBVersion, info.DPDKVersion, info.DatapathTypes, info.IfaceTypes, info.DPDKInitialized, info.HWOffload})
	if got != want || info.Endpoint != ep || info.Reason != "" {
		t.Errorf("got %s (endpoint %s, reason %q)\nwant %s", got, info.Endpoint, info.Reason, want)
	}
}

func TestProberUnreachable(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		endpoint, want string
	}{
		{"unix:" + filepath.Join(t.TempDir(), "db.sock"), "no OVSDB socket at"},
		{fmt.Sprintf("tcp:127.0.0.1:%d", freeLoopbackPort(t)), "connection refused at tcp:127.0.0.1:"},
	} {
		info, err := ovsdpdk.NewProber(tc.endpoint, ovsdpdk.WithProberTimeout(2*time.Second)).ProbeOVS(ctx)
		if err != nil {
			t.Fatalf("%s: error %v (want reachable=false and a reason)", tc.endpoint, err)
		}
		if info.Reachable || !strings.Contains(info.Reason, tc.want) || info.Endpoint != tc.endpoint {
			t.Errorf("%s: %+v, want reason containing %q", tc.endpoint, info, tc.want)
		}
	}
}

func TestProberEmptyDatabase(t *testing.T) {
	info, err := ovsdpdk.NewProber(lab.MemOVSDB(t)).ProbeOVS(ctxT(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "no Open_vSwitch row") {
		t.Fatalf("info %+v err %v, want an error about the missing row", info, err)
	}
}
