package hwdetect

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// store is the raw storage of a capture: canonical paths only (no symlink in any
// parent), nothing followed.
type store interface {
	lstat(p string) (fs.FileInfo, error)
	readlink(p string) (string, error)
	readFile(p string) ([]byte, error)
	readDir(p string) ([]fs.DirEntry, error)
}

// captureFS reads a capture (a directory or an in-memory tarball) and resolves its
// symlinks itself, as chroot would: absolute targets start at the capture's root and
// ".." stops there, so no capture can make detection read outside it. Resolved paths
// are memoized, which keeps replay to about one syscall per attribute on a directory.
type captureFS struct {
	st   store
	mu   sync.Mutex
	memo map[string]resolved // canonical parent + "/" + element → where it leads
}

// resolved is a memoized path: its canonical location and what is there.
type resolved struct {
	canon string
	mode  fs.FileMode
}

func newCaptureFS(st store) *captureFS { return &captureFS{st: st, memo: map[string]resolved{}} }

// resolve returns the canonical path of name, following symlinks in every element but
// the last unless followLast.
func (c *captureFS) resolve(name string, followLast bool) (string, error) {
	r, err := c.resolveMode(name, followLast)
	return r.canon, err
}

// resolveMode is resolve that also returns the mode of what is there (0 when the last
// element was not followed).
func (c *captureFS) resolveMode(name string, followLast bool) (resolved, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := cleanRel(name)
	hops := 0
	if followLast || p == "" {
		return c.resolveLocked(p, &hops)
	}
	dir, err := c.resolveLocked(parentOf(p), &hops)
	if err != nil {
		return resolved{}, err
	}
	if dir.canon == "" {
		return resolved{canon: path.Base(p)}, nil
	}
	return resolved{canon: dir.canon + "/" + path.Base(p)}, nil
}

// resolveLocked resolves every element of name; hops counts the links followed.
func (c *captureFS) resolveLocked(name string, hops *int) (resolved, error) {
	cur := resolved{mode: fs.ModeDir}
	for _, el := range strings.Split(name, "/") {
		if el == "" {
			continue
		}
		next := el
		if cur.canon != "" {
			next = cur.canon + "/" + el
		}
		if r, ok := c.memo[next]; ok {
			cur = r
			continue
		}
		fi, err := c.st.lstat(next)
		if err != nil {
			return resolved{}, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = resolved{canon: next, mode: fi.Mode()}
			c.memo[next] = cur
			continue
		}
		if *hops++; *hops > maxLinkHops {
			return resolved{}, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("too many levels of symbolic links")}
		}
		target, err := c.st.readlink(next)
		if err != nil {
			return resolved{}, err
		}
		// Resolve the target fully (it may hold links itself), then memoize the link.
		r, err := c.resolveLocked(joinLink(cur.canon, target), hops)
		if err != nil {
			return resolved{}, err
		}
		c.memo[next] = r
		cur = r
	}
	return cur, nil
}

func (c *captureFS) ReadFile(name string) ([]byte, error) {
	r, err := c.resolveMode(name, true)
	if err != nil {
		return nil, err
	}
	if !r.mode.IsRegular() {
		// Directories, fifos, devices: never opened (a fifo would block).
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("not a regular file")}
	}
	return c.st.readFile(r.canon)
}

func (c *captureFS) Readlink(name string) (string, error) {
	p, err := c.resolve(name, false)
	if err != nil {
		return "", err
	}
	return c.st.readlink(p)
}

func (c *captureFS) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := c.resolve(name, true)
	if err != nil {
		return nil, err
	}
	return c.st.readDir(p)
}

func (c *captureFS) Stat(name string) (fs.FileInfo, error) {
	p, err := c.resolve(name, true)
	if err != nil {
		return nil, err
	}
	return c.st.lstat(p)
}

func (c *captureFS) Lstat(name string) (fs.FileInfo, error) {
	p, err := c.resolve(name, false)
	if err != nil {
		return nil, err
	}
	return c.st.lstat(p)
}

// dirStore is a capture directory. Paths reach it canonical (symlinks already resolved
// by captureFS, each element checked with lstat), so the kernel follows none of the
// capture's links. The directory is the operator's or a private temp dir; a concurrent
// writer swapping a directory for a link is outside the threat model.
type dirStore struct{ dir string }

func (d dirStore) p(name string) string { return filepath.Join(d.dir, filepath.FromSlash(name)) }

func (d dirStore) lstat(p string) (fs.FileInfo, error) { return os.Lstat(d.p(p)) }
func (d dirStore) readlink(p string) (string, error)   { return os.Readlink(d.p(p)) }

// readFile reads a regular file (captureFS checked the type), at most maxCaptureFile bytes.
func (d dirStore) readFile(p string) ([]byte, error) {
	f, err := os.Open(d.p(p))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCaptureFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCaptureFile {
		return nil, &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("larger than %d bytes", maxCaptureFile)}
	}
	return b, nil
}

func (d dirStore) readDir(p string) ([]fs.DirEntry, error) { return os.ReadDir(d.p(p)) }

// memStore is a tarball capture held in memory: nothing is written to disk.
type memStore struct {
	entries map[string]*memEntry
}

type memEntry struct {
	name     string
	mode     fs.FileMode
	data     []byte
	target   string
	children []string // sorted names, for directories
}

func newMemStore() *memStore {
	return &memStore{entries: map[string]*memEntry{"": {name: ".", mode: fs.ModeDir | 0o755}}}
}

// dir returns (creating) the directory p and its parents.
func (m *memStore) dir(p string) (*memEntry, error) {
	if e, ok := m.entries[p]; ok {
		if !e.mode.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", p)
		}
		return e, nil
	}
	parent, err := m.dir(parentOf(p))
	if err != nil {
		return nil, err
	}
	e := &memEntry{name: path.Base(p), mode: fs.ModeDir | 0o755}
	m.entries[p] = e
	parent.children = append(parent.children, e.name)
	return e, nil
}

// add puts a file or symlink at p (a later entry for the same path replaces it).
func (m *memStore) add(p string, e *memEntry) error {
	parent, err := m.dir(parentOf(p))
	if err != nil {
		return err
	}
	e.name = path.Base(p)
	if old, ok := m.entries[p]; ok {
		if old.mode.IsDir() {
			return fmt.Errorf("%s is a directory", p)
		}
	} else {
		parent.children = append(parent.children, e.name)
	}
	m.entries[p] = e
	return nil
}

func (m *memStore) finish() {
	for _, e := range m.entries {
		slices.Sort(e.children)
	}
}

func parentOf(p string) string {
	d := path.Dir(p)
	if d == "." {
		return ""
	}
	return d
}

func (m *memStore) get(p string) (*memEntry, error) {
	if e, ok := m.entries[p]; ok {
		return e, nil
	}
	return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
}

func (m *memStore) lstat(p string) (fs.FileInfo, error) {
	e, err := m.get(p)
	if err != nil {
		return nil, err
	}
	return memInfo{e}, nil
}

func (m *memStore) readlink(p string) (string, error) {
	e, err := m.get(p)
	if err != nil {
		return "", err
	}
	if e.mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: fmt.Errorf("not a symlink")}
	}
	return e.target, nil
}

func (m *memStore) readFile(p string) ([]byte, error) {
	e, err := m.get(p)
	if err != nil {
		return nil, err
	}
	if !e.mode.IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("not a regular file")}
	}
	return e.data, nil
}

func (m *memStore) readDir(p string) ([]fs.DirEntry, error) {
	e, err := m.get(p)
	if err != nil {
		return nil, err
	}
	if !e.mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: p, Err: fmt.Errorf("not a directory")}
	}
	out := make([]fs.DirEntry, 0, len(e.children))
	for _, c := range e.children {
		child := c
		if p != "" {
			child = p + "/" + c
		}
		out = append(out, fs.FileInfoToDirEntry(memInfo{m.entries[child]}))
	}
	return out, nil
}

// memInfo is the fs.FileInfo of a memEntry.
type memInfo struct{ e *memEntry }

func (i memInfo) Name() string       { return i.e.name }
func (i memInfo) Size() int64        { return int64(len(i.e.data)) }
func (i memInfo) Mode() fs.FileMode  { return i.e.mode }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.e.mode.IsDir() }
func (i memInfo) Sys() any           { return nil }
