package lab

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/ovn-kubernetes/libovsdb/database/inmemory"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/server"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// MemOVSDB serves the Open_vSwitch schema from libovsdb's in-memory OVSDB server on a
// unix socket and returns its endpoint ("unix:…"), stopped at cleanup. It is the
// unit-test tier's OVSDB: no root and no OVS needed (so no Require); the lab tests run
// the real ovsdb-server with StartOVS.
func MemOVSDB(t testing.TB) string {
	t.Helper()
	clientModel, err := vswitchd.FullDatabaseModel()
	if err != nil {
		t.Fatal(err)
	}
	dbModel, errs := model.NewDatabaseModel(vswitchd.Schema(), clientModel)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	l := logr.Discard()
	db := inmemory.NewDatabase(map[string]model.ClientDBModel{"Open_vSwitch": clientModel}, &l)
	srv, err := server.NewOvsdbServer(db, &l, dbModel)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "db.sock")
	go func() { _ = srv.Serve("unix", sock) }()
	t.Cleanup(srv.Close)
	for deadline := time.Now().Add(5 * time.Second); !srv.Ready(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("in-memory ovsdb server not ready")
		}
	}
	return "unix:" + sock
}
