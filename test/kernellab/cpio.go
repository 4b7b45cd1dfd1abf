package kernellab

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// The initramfs is a "newc" cpio archive (the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst). Writing it here keeps the
// archive deterministic (sorted, mtime 0, so its hash names the cache entry) and needs
// no cpio binary.

// Entry kinds in an initramfs tree.
const (
	kindDir = iota
	kindFile
	kindSymlink
	kindCharDev
)

type cpioEntry struct {
	kind         int
	mode         uint32 // permission bits
	data         []byte // file content (kindFile)
	source       string // host file to read the content from when data is nil (kindFile)
	target       string // kindSymlink
	major, minor uint32 // kindCharDev
}

// tree is an initramfs being assembled: slash paths relative to the root, no leading
// slash ("usr/bin/busybox").
type tree struct {
	entries map[string]*cpioEntry
}

func newTree() *tree { return &tree{entries: map[string]*cpioEntry{}} }

func cleanTreePath(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// dir adds a directory and its parents.
func (t *tree) dir(p string) {
	p = cleanTreePath(p)
	for p != "" && p != "." {
		if e, ok := t.entries[p]; ok && e.kind != kindDir {
			return // a symlink (e.g. lib -> usr/lib) already stands for it
		}
		if _, ok := t.entries[p]; !ok {
			t.entries[p] = &cpioEntry{kind: kindDir, mode: 0o755}
		}
		p = path.Dir(p)
	}
}

func (t *tree) parent(p string) {
	if d := path.Dir(p); d != "." && d != "/" {
		t.dir(d)
	}
}

// file adds a regular file with the given content.
func (t *tree) file(p string, mode uint32, data []byte) {
	p = cleanTreePath(p)
	t.parent(p)
	t.entries[p] = &cpioEntry{kind: kindFile, mode: mode, data: data}
}

// hostFile adds a regular file whose content is read from src when the archive is written.
func (t *tree) hostFile(p string, mode uint32, src string) {
	p = cleanTreePath(p)
	t.parent(p)
	t.entries[p] = &cpioEntry{kind: kindFile, mode: mode, source: src}
}

func (t *tree) symlink(p, target string) {
	p = cleanTreePath(p)
	t.parent(p)
	t.entries[p] = &cpioEntry{kind: kindSymlink, mode: 0o777, target: target}
}

func (t *tree) charDev(p string, mode, major, minor uint32) {
	p = cleanTreePath(p)
	t.parent(p)
	t.entries[p] = &cpioEntry{kind: kindCharDev, mode: mode, major: major, minor: minor}
}

// has reports whether p is in the tree.
func (t *tree) has(p string) bool { _, ok := t.entries[cleanTreePath(p)]; return ok }

// writeCpio writes the tree as a newc archive: parents before children (sorted paths
// guarantee it), then the trailer. open reads host files (os.Open on the host).
func (t *tree) writeCpio(w io.Writer, open func(string) (io.ReadCloser, int64, error)) error {
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &cpioWriter{w: bw}
	for i, n := range names {
		e := t.entries[n]
		if err := cw.entry(uint32(i+1), n, e, open); err != nil {
			return fmt.Errorf("initramfs %s: %w", n, err)
		}
	}
	if err := cw.header(0, "TRAILER!!!", 0, 1, 0, 0, 0); err != nil {
		return err
	}
	return bw.Flush()
}

type cpioWriter struct {
	w   *bufio.Writer
	off int64
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
	sIFCHR = 0o020000
)

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.off % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

func (c *cpioWriter) header(ino uint32, name string, mode uint32, nlink uint32, size int64, rmajor, rminor uint32) error {
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, rmajor, rminor, len(name)+1, 0)
	if err := c.write([]byte(h)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) entry(ino uint32, name string, e *cpioEntry, open func(string) (io.ReadCloser, int64, error)) error {
	switch e.kind {
	case kindDir:
		return c.header(ino, name, sIFDIR|e.mode, 2, 0, 0, 0)
	case kindSymlink:
		if err := c.header(ino, name, sIFLNK|e.mode, 1, int64(len(e.target)), 0, 0); err != nil {
			return err
		}
		if err := c.write([]byte(e.target)); err != nil {
			return err
		}
		return c.pad()
	case kindCharDev:
		return c.header(ino, name, sIFCHR|e.mode, 1, 0, e.major, e.minor)
	case kindFile:
		if e.data != nil || e.source == "" {
			if err := c.header(ino, name, sIFREG|e.mode, 1, int64(len(e.data)), 0, 0); err != nil {
				return err
			}
			if err := c.write(e.data); err != nil {
				return err
			}
			return c.pad()
		}
		rc, size, err := open(e.source)
		if err != nil {
			return err
		}
		defer rc.Close()
		if size > 1<<32-1 {
			return fmt.Errorf("%s: %d bytes is too large for cpio", e.source, size)
		}
		if err := c.header(ino, name, sIFREG|e.mode, 1, size, 0, 0); err != nil {
			return err
		}
		n, err := io.Copy(c.w, io.LimitReader(rc, size))
		c.off += n
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%s: changed size while archiving (%d of %d bytes)", e.source, n, size)
		}
		return c.pad()
	}
	return fmt.Errorf("unknown entry kind %d", e.kind)
}

// openHost opens a host file for writeCpio.
func openHost(p string) (io.ReadCloser, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// hash is a digest of the tree: paths, kinds, modes, symlink targets, inline contents,
// and for host files their path, size and modification time.
func (t *tree) hash() (string, error) {
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		e := t.entries[n]
		fmt.Fprintf(h, "%s\x00%d\x00%o\x00%s\x00%d:%d\x00", n, e.kind, e.mode, e.target, e.major, e.minor)
		if e.kind == kindFile {
			if e.source != "" && e.data == nil {
				fi, err := os.Stat(e.source)
				if err != nil {
					return "", err
				}
				fmt.Fprintf(h, "%s\x00%d\x00%d\x00", e.source, fi.Size(), fi.ModTime().UnixNano())
			} else {
				h.Write(e.data)
			}
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
