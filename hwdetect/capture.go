package hwdetect

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// ErrBadCapture marks a --from capture that cannot be replayed: missing, not a
// directory or .tar.gz, corrupt, or not an offlane capture. Callers treat it as bad
// user input.
var ErrBadCapture = errors.New("bad capture")

// Capture layout: files that have no sysfs/procfs home live under offlane/.
const (
	captureDevlink = "offlane/devlink.json" // {"<pci address>": {"eswitch_mode": "switchdev"}}
	captureEthtool = "offlane/ethtool"      // <ifname>.json: EthtoolInfo
	captureOVS     = "offlane/ovs.json"     // OVSInfo
	captureMeta    = "offlane/capture.json" // CaptureMeta
	captureFormat  = 1                      // CaptureMeta.Format written by this code
	maxCaptureSize = 512 << 20              // bytes extracted from a tarball, in all
	maxCaptureFile = 64 << 20               // bytes of one file in a tarball
	maxEntries     = 1 << 20                // entries in a tarball
	ovsNotProbed   = "not probed: no OVSDB endpoint given or found"
)

// CaptureMeta is offlane/capture.json: what wrote the capture.
type CaptureMeta struct {
	Format   int       `json:"format"`
	Created  time.Time `json:"created"`
	Hostname string    `json:"hostname"`
	Source   string    `json:"source"` // "live", or the capture it was re-captured from
}

// openCapture opens a capture directory or .tar.gz for replay. A tarball is read into
// memory (nothing is written to disk); a directory is read in place.
func openCapture(from string) (fsys, error) {
	fi, err := os.Stat(from)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist", ErrBadCapture, from)
		}
		return nil, fmt.Errorf("%w: %w", ErrBadCapture, err)
	}
	var st store
	if fi.IsDir() {
		st = dirStore{dir: from}
	} else {
		m, err := loadTarball(from)
		if err != nil {
			return nil, err
		}
		st = m
	}
	f := newCaptureFS(st)
	if fi, err := f.Stat("sys"); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s has no sys/ directory: not an offlane capture (make one with `offlane detect --capture FILE.tar.gz`)", ErrBadCapture, from)
	}
	return f, nil
}

// loadTarball reads a .tar.gz (or plain .tar) capture into memory. Only directories,
// regular files and symlinks are kept; names must stay inside the capture; sizes are
// bounded.
func loadTarball(file string) (*memStore, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrBadCapture, file, fmt.Sprintf(format, args...))
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCapture, err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var rd io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, bad("corrupt gzip data: %v", err)
		}
		defer zr.Close()
		rd = zr
	}
	m := newMemStore()
	tr := tar.NewReader(rd)
	var total int64
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, bad("corrupt tar archive: %v", err)
		}
		if n++; n > maxEntries {
			return nil, bad("more than %d entries", maxEntries)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if name == "" || name == "." {
			continue
		}
		if !fs.ValidPath(name) {
			return nil, bad("entry %q escapes the capture", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			_, err = m.dir(name)
		case tar.TypeReg:
			if h.Size > maxCaptureFile {
				return nil, bad("entry %q is larger than %d bytes", h.Name, maxCaptureFile)
			}
			if total += h.Size; total > maxCaptureSize {
				return nil, bad("more than %d bytes", maxCaptureSize)
			}
			b, rerr := io.ReadAll(io.LimitReader(tr, h.Size))
			if rerr != nil {
				return nil, bad("corrupt tar archive: %v", rerr)
			}
			err = m.add(name, &memEntry{mode: 0o644, data: b})
		case tar.TypeSymlink:
			// Stored as is: captureFS resolves it inside the capture, chroot-style.
			err = m.add(name, &memEntry{mode: fs.ModeSymlink | 0o777, target: h.Linkname})
		default:
			// Hard links, devices, fifos: not part of the format, skipped.
		}
		if err != nil {
			return nil, bad("entry %q: %v", h.Name, err)
		}
	}
	if n == 0 {
		return nil, bad("empty archive")
	}
	m.finish()
	return m, nil
}

// captureWriter collects what one detection read and writes it as a .tar.gz.
type captureWriter struct {
	rec     *recorder
	devlink map[string]DevlinkInfo
	ethtool map[string]*EthtoolInfo
	ovs     *OVSInfo
}

type tarEntry struct {
	kind   byte // tar.TypeDir, tar.TypeReg, tar.TypeSymlink
	data   []byte
	target string
}

func (c *captureWriter) write(w io.Writer, meta CaptureMeta) error {
	entries := map[string]tarEntry{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "." && d != "/" && d != ""; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = tarEntry{kind: tar.TypeDir}
			}
		}
	}
	for d := range c.rec.dirs {
		if d != "" {
			entries[d] = tarEntry{kind: tar.TypeDir}
		}
	}
	for l, t := range c.rec.links {
		entries[l] = tarEntry{kind: tar.TypeSymlink, target: t}
	}
	for f, b := range c.rec.files {
		entries[f] = tarEntry{kind: tar.TypeReg, data: b}
	}
	putJSON := func(name string, v any) error {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("capture %s: %w", name, err)
		}
		entries[name] = tarEntry{kind: tar.TypeReg, data: append(b, '\n')}
		return nil
	}
	if err := putJSON(captureMeta, meta); err != nil {
		return err
	}
	if err := putJSON(captureDevlink, c.devlink); err != nil {
		return err
	}
	for ifname, info := range c.ethtool {
		if err := putJSON(captureEthtool+"/"+ifname+".json", info); err != nil {
			return err
		}
	}
	if c.ovs != nil {
		if err := putJSON(captureOVS, c.ovs); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	for _, p := range names {
		addParents(p)
	}
	names = names[:0]
	for p := range entries {
		names = append(names, p)
	}
	sort.Strings(names)

	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	now := meta.Created
	for _, p := range names {
		e := entries[p]
		h := &tar.Header{Name: p, ModTime: now, Typeflag: e.kind, Format: tar.FormatPAX}
		switch e.kind {
		case tar.TypeDir:
			h.Name += "/"
			h.Mode = 0o755
		case tar.TypeSymlink:
			h.Linkname = e.target
			h.Mode = 0o777
		default:
			h.Mode = 0o644
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write capture %s: %w", p, err)
		}
		if e.kind == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("write capture %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write capture: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write capture: %w", err)
	}
	return nil
}

// recordingDevlink remembers devlink answers for offlane/devlink.json.
type recordingDevlink struct {
	inner DevlinkReader
	seen  map[string]DevlinkInfo
}

func (r recordingDevlink) EswitchMode(ctx context.Context, pci string) (string, error) {
	m, err := r.inner.EswitchMode(ctx, pci)
	if err == nil {
		r.seen[pci] = DevlinkInfo{EswitchMode: m}
	}
	return m, err
}

// recordingEthtool remembers ethtool answers for offlane/ethtool/<ifname>.json.
type recordingEthtool struct {
	inner EthtoolReader
	seen  map[string]*EthtoolInfo
}

func (r recordingEthtool) Ethtool(ctx context.Context, ifname string) (*EthtoolInfo, error) {
	info, err := r.inner.Ethtool(ctx, ifname)
	if err == nil && info != nil {
		r.seen[ifname] = info
	}
	return info, err
}

// replayDevlink answers from offlane/devlink.json.
type replayDevlink struct{ modes map[string]DevlinkInfo }

func (r replayDevlink) EswitchMode(_ context.Context, pci string) (string, error) {
	if m, ok := r.modes[pci]; ok && m.EswitchMode != "" {
		return m.EswitchMode, nil
	}
	return "", fmt.Errorf("pci/%s: not in %s", pci, captureDevlink)
}

// replayEthtool answers from offlane/ethtool/<ifname>.json.
type replayEthtool struct {
	fs  fsys
	log *zap.Logger
}

func (r replayEthtool) Ethtool(_ context.Context, ifname string) (*EthtoolInfo, error) {
	name := captureEthtool + "/" + ifname + ".json"
	var info EthtoolInfo
	if err := readJSON(r.fs, name, &info); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("capture file unreadable: read as unknown", zap.String("file", name), zap.Error(err))
		}
		return nil, err
	}
	return &info, nil
}

func readJSON(f fsys, name string, v any) error {
	b, err := f.ReadFile(name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: invalid JSON: %w", name, err)
	}
	return nil
}

// replaySources builds the devlink/ethtool/OVS answers of a capture.
func replaySources(f fsys, log *zap.Logger) (DevlinkReader, EthtoolReader, *OVSInfo) {
	modes := map[string]DevlinkInfo{}
	if err := readJSON(f, captureDevlink, &modes); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("capture file unreadable: eswitch modes read as unknown", zap.String("file", captureDevlink), zap.Error(err))
		modes = map[string]DevlinkInfo{}
	}
	ovs := &OVSInfo{Reason: "not in the capture (" + captureOVS + ")"}
	var o OVSInfo
	switch err := readJSON(f, captureOVS, &o); {
	case err == nil:
		ovs = &o
	case !errors.Is(err, fs.ErrNotExist):
		log.Warn("capture file unreadable: OVS reads as unknown", zap.String("file", captureOVS), zap.Error(err))
	}
	return replayDevlink{modes}, replayEthtool{f, log}, normalizeOVS(ovs)
}

// normalizeOVS makes the lists non-nil so JSON shows [] rather than null.
func normalizeOVS(o *OVSInfo) *OVSInfo {
	if o.DatapathTypes == nil {
		o.DatapathTypes = []string{}
	}
	if o.IfaceTypes == nil {
		o.IfaceTypes = []string{}
	}
	slices.Sort(o.DatapathTypes)
	slices.Sort(o.IfaceTypes)
	return o
}
