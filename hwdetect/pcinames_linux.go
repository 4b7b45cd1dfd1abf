//go:build linux

package hwdetect

import (
	"log/slog"
	"sync"

	"github.com/jaypipes/ghw"
	"github.com/jaypipes/ghw/pkg/pci"
	"go.uber.org/zap"
)

// ghwNamer resolves PCI names with ghw's PCI ids database (jaypipes/pcidb).
//
// ghw v0.26.0 reads the ids database from the host even with WithChroot: pci.New loads
// pcidb without the chroot (pcidb looks in /usr/share/hwdata and /usr/share/misc, or
// $PCIDB_PATH). So a replayed capture is named with the replaying host's pci.ids,
// which is what an operator reading it wants; captures need not carry the 1.3 MB file.
// Parsing the database takes ~50 ms of CPU, so it is loaded once per Detector, in the
// background as soon as the first PCI interface is found (prefetch), while the rest of
// sysfs is read.
type ghwNamer struct {
	root string
	log  *zap.Logger
	once sync.Once
	info *pci.Info
}

func (g *ghwNamer) load() {
	info, err := ghw.PCI(
		ghw.WithChroot(g.root),
		ghw.WithDisableTools(),
		ghw.WithDisableTopology(),
		ghw.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		g.log.Debug("no PCI ids database: vendor and device names stay empty", zap.Error(err))
		return
	}
	g.info = info
}

// prefetch starts loading the database in the background; Names waits for it.
func (g *ghwNamer) prefetch() { go g.once.Do(g.load) }

// unknownName is what ghw returns for ids missing from the database.
const unknownName = "unknown"

func (g *ghwNamer) Names(address, modalias string) (string, string) {
	g.once.Do(g.load)
	if g.info == nil {
		return "", ""
	}
	d := g.info.ParseDevice(address, modalias)
	if d == nil {
		return "", ""
	}
	var v, p string
	if d.Vendor != nil && d.Vendor.Name != unknownName {
		v = d.Vendor.Name
	}
	if d.Product != nil && d.Product.Name != unknownName {
		p = d.Product.Name
	}
	return v, p
}
