package hwdetect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// ErrNotSupported is returned by the live devlink and ethtool readers off Linux.
var ErrNotSupported = errors.New("hwdetect: live devlink and ethtool need Linux")

// Detector detects a node, repeatedly if asked (an agent re-reads its node): it keeps
// the PCI ids database loaded between calls. It is safe for concurrent use when the
// injected readers are.
type Detector struct {
	opts  Options
	log   *zap.Logger
	names *ghwNamer
}

// New returns a Detector for opts.
func New(opts Options) *Detector {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("hwdetect")
	// ghw's chroot: the tree being read (its device scan is not used, only the ids
	// database, which ghw always takes from the host).
	root := opts.Root
	switch {
	case opts.From != "":
		root = opts.From
	case root == "":
		root = "/"
	}
	return &Detector{opts: opts, log: log, names: &ghwNamer{root: root, log: log}}
}

// Detect reads the node (live, or the capture in opts.From) and returns what it can do.
// It is a shortcut for New(opts).Detect(ctx).
func Detect(ctx context.Context, opts Options) (*Node, error) {
	return New(opts).Detect(ctx)
}

// Detect reads the node once. Errors wrap ErrBadCapture when opts.From cannot be
// replayed; a missing piece of a capture is not an error but reads as unknown.
func (d *Detector) Detect(ctx context.Context) (*Node, error) {
	return d.run(ctx, nil)
}

// Capture detects like Detect and writes everything detection read to w as a .tar.gz
// capture (sys/..., proc/..., offlane/*.json), which Options.From replays.
func (d *Detector) Capture(ctx context.Context, w io.Writer) (*Node, error) {
	cw := &captureWriter{devlink: map[string]DevlinkInfo{}, ethtool: map[string]*EthtoolInfo{}}
	node, err := d.run(ctx, cw)
	if err != nil {
		return nil, err
	}
	meta := CaptureMeta{Format: captureFormat, Created: time.Now().UTC().Truncate(time.Second), Hostname: node.Hostname, Source: node.Source}
	if err := cw.write(w, meta); err != nil {
		return nil, err
	}
	return node, nil
}

// run is one detection; cw, when set, records it.
func (d *Detector) run(ctx context.Context, cw *captureWriter) (*Node, error) {
	var (
		f       fsys
		dl      DevlinkReader
		et      EthtoolReader
		ovs     *OVSInfo
		source  = "live"
		cleanup = func() {}
	)
	if d.opts.From != "" {
		cf, err := openCapture(d.opts.From)
		if err != nil {
			return nil, err
		}
		f, source = cf, d.opts.From
		dl, et, ovs = replaySources(f, d.log)
	} else {
		root := d.opts.Root
		if root == "" {
			root = "/"
		}
		f = liveFS{root: root}
		ldl, let, closeLive := liveSources()
		cleanup = closeLive
		dl, et = d.opts.Devlink, d.opts.Ethtool
		if dl == nil {
			dl = ldl
		}
		if et == nil {
			et = let
		}
	}
	defer cleanup()

	if cw != nil {
		cw.rec = newRecorder(f)
		f = cw.rec
		dl = recordingDevlink{inner: dl, seen: cw.devlink}
		et = recordingEthtool{inner: et, seen: cw.ethtool}
	}

	nr := nodeReader{fs: f, log: d.log}
	params := nr.cmdline()
	node := &Node{
		Hostname: nr.hostname(),
		Kernel:   readOpt(f, pathOSRelease),
		Source:   source,
		NICs:     []NIC{},
	}
	node.CPUs = nr.cpus(params)
	node.Hugepages = nr.hugepages(nr.nodeIDs())
	node.IOMMU = nr.iommu(params)
	node.KernelFeatures = nr.kernelFeatures(node.Kernel)

	if d.opts.From == "" {
		ovs = d.probeOVS(ctx)
	}
	node.OVS = normalizeOVS(ovs)
	if cw != nil {
		cw.ovs = node.OVS
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	nicr := &nicReader{fs: f, log: d.log, names: d.names, pcis: map[string]*pciDevice{}, onPCI: d.names.prefetch}
	nds, err := nicr.netdevs()
	if err != nil {
		if d.opts.From != "" {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadCapture, d.opts.From, err)
		}
		return nil, err
	}
	for _, nd := range nds {
		if !d.opts.All && nd.kind != KindDevice {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		node.NICs = append(node.NICs, d.nic(ctx, nicr, nd, nds, node, dl, et))
	}
	nicr.nameNICs(node.NICs)
	return node, nil
}

// probeOVS asks the injected prober; an unreachable OVS is a state, not an error.
func (d *Detector) probeOVS(ctx context.Context) *OVSInfo {
	if d.opts.OVS == nil {
		return &OVSInfo{Reason: ovsNotProbed}
	}
	info, err := d.opts.OVS.ProbeOVS(ctx)
	if err != nil {
		d.log.Debug("OVS probe failed", zap.Error(err))
		return &OVSInfo{Reason: err.Error()}
	}
	if info == nil {
		return &OVSInfo{Reason: "the OVS prober returned nothing"}
	}
	return info
}

// nic builds one row.
func (d *Detector) nic(ctx context.Context, nicr *nicReader, nd *netdev, all []*netdev, node *Node, dl DevlinkReader, et EthtoolReader) NIC {
	n := nicr.baseNIC(nd)
	if info, err := et.Ethtool(ctx, nd.name); err == nil && info != nil {
		if info.Driver != "" {
			n.Driver = info.Driver
		}
		n.DriverVersion, n.FirmwareVersion = info.DriverVersion, info.FirmwareVersion
		n.Features = featuresFrom(info.Features)
	} else if err != nil {
		d.log.Debug("no ethtool data: driver version, firmware and features unknown", zap.String("netdev", nd.name), zap.Error(err))
	}

	inferred := false
	if nd.kind == KindDevice && nd.pciDir != "" {
		p := nicr.pciDevice(nd.pciDir)
		n.SRIOV = nicr.sriov(p)
		n.Representors = representorsOf(nd, all)
		if mode, err := dl.EswitchMode(ctx, nd.pci); err == nil && (mode == EswitchLegacy || mode == EswitchSwitchdev) {
			n.EswitchMode = mode
		} else if err != nil {
			d.log.Debug("no devlink eswitch mode", zap.String("pci", nd.pci), zap.Error(err))
		}
		byVF := map[int]string{}
		for _, r := range n.Representors {
			if r.Flavour == FlavourVF {
				byVF[r.VFIndex] = r.Netdev
			}
		}
		if n.EswitchMode == EswitchUnknown && len(byVF) > 0 {
			// VF representors exist only in switchdev mode.
			n.EswitchMode, inferred = EswitchSwitchdev, true
		}
		if n.SRIOV != nil {
			for i := range n.SRIOV.VFs {
				n.SRIOV.VFs[i].Representor = byVF[n.SRIOV.VFs[i].Index]
			}
		}
	}

	m := lookupModel(n.Driver, n.DeviceID)
	n.Model = m.model
	n.DPDK = dpdkInfo(&n, m, node)
	n.Capabilities = capabilities(&n, m, node.KernelFeatures)
	switch nd.kind {
	case KindDevice:
		// A VF model here is a VF passed through into this machine (a VM): it is the
		// node's uplink and gets a recommendation like any device.
		n.RecommendedMode, n.PotentialMode, n.Reasons = recommend(&n, m, node)
		if inferred {
			n.Reasons = append(n.Reasons, "eswitch mode inferred from the VF representors (no devlink answer)")
		}
	case KindVF:
		r := "SR-IOV VF"
		if nd.physfn != "" {
			r += " of " + nd.physfn
		}
		n.Reasons = []string{r + ": hand it to a VNF; the PF's mode applies"}
	case KindRepresentor:
		r := "representor (" + nd.port.flavour
		if nd.port.index >= 0 {
			r += " " + strconv.Itoa(nd.port.index)
		}
		n.Reasons = []string{r + ") of PF " + strconv.Itoa(nd.port.pf) + ": host side of an eswitch port"}
	default:
		n.Reasons = []string{"no device: a software interface"}
	}
	return n
}
