package hwdetect

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// fsys is the read-only view of a node's root that detection reads through. Names are
// slash-separated and relative to the root ("sys/class/net/eth0/address"). Symlinks are
// followed the way the kernel would follow them on the live system.
type fsys interface {
	ReadFile(name string) ([]byte, error)
	Readlink(name string) (string, error)
	// ReadDir returns the entries sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
	Lstat(name string) (fs.FileInfo, error)
}

// liveFS reads a live root with plain os calls: it is the machine's own tree, so there
// is nothing to confine, and the kernel resolves sysfs symlinks in one syscall.
type liveFS struct{ root string }

func (l liveFS) p(name string) string { return filepath.Join(l.root, filepath.FromSlash(name)) }

func (l liveFS) ReadFile(name string) ([]byte, error)       { return os.ReadFile(l.p(name)) }
func (l liveFS) Readlink(name string) (string, error)       { return os.Readlink(l.p(name)) }
func (l liveFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(l.p(name)) }
func (l liveFS) Stat(name string) (fs.FileInfo, error)      { return os.Stat(l.p(name)) }
func (l liveFS) Lstat(name string) (fs.FileInfo, error)     { return os.Lstat(l.p(name)) }

// maxLinkHops bounds symlink resolution like the kernel's MAXSYMLINKS.
const maxLinkHops = 40

// joinLink resolves a symlink target relative to the directory holding the link,
// lexically and confined to the root: ".." at the root stays at the root.
func joinLink(dir, target string) string {
	if path.IsAbs(target) {
		return cleanRel(target)
	}
	return cleanRel(path.Join(dir, target))
}

// cleanRel cleans a slash path and makes it relative to the root ("" is the root).
func cleanRel(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

// realpath resolves every symlink in name, component by component, and returns the
// canonical root-relative path. visit, when set, is called for each symlink met with
// its canonical location and raw target (the capture writer records them).
func realpath(f fsys, name string, visit func(link, target string)) (string, error) {
	parts := strings.Split(cleanRel(name), "/")
	cur := ""
	hops := 0
	for i := 0; i < len(parts); i++ {
		c := parts[i]
		if c == "" {
			continue
		}
		next := c
		if cur != "" {
			next = cur + "/" + c
		}
		fi, err := f.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		hops++
		if hops > maxLinkHops {
			return "", fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		target, err := f.Readlink(next)
		if err != nil {
			return "", err
		}
		if visit != nil {
			visit(next, target)
		}
		// Restart from the link's directory with the target's components spliced in.
		rest := append(strings.Split(joinLink(cur, target), "/"), parts[i+1:]...)
		parts = rest
		i = -1
		cur = ""
	}
	return cur, nil
}

// recorder wraps an fsys and remembers everything read, at its canonical location,
// with every symlink met on the way: exactly what a capture must hold to replay.
// It is used by one detection at a time (not safe for concurrent use).
type recorder struct {
	inner fsys
	files map[string][]byte
	links map[string]string
	dirs  map[string]bool
}

func newRecorder(inner fsys) *recorder {
	return &recorder{inner: inner, files: map[string][]byte{}, links: map[string]string{}, dirs: map[string]bool{}}
}

func (r *recorder) addLink(link, target string) { r.links[link] = target }

// real resolves name for recording; an error means the path vanished between the read
// and now, and the read is simply not recorded.
func (r *recorder) real(name string) (string, bool) {
	rp, err := realpath(r.inner, name, r.addLink)
	return rp, err == nil
}

func (r *recorder) ReadFile(name string) ([]byte, error) {
	b, err := r.inner.ReadFile(name)
	if err == nil {
		if rp, ok := r.real(name); ok {
			r.files[rp] = b
		}
	}
	return b, err
}

func (r *recorder) Readlink(name string) (string, error) {
	t, err := r.inner.Readlink(name)
	if err == nil {
		if dir, ok := r.real(path.Dir(cleanRel(name))); ok {
			link := path.Join(dir, path.Base(name))
			r.links[cleanRel(link)] = t
		}
	}
	return t, err
}

func (r *recorder) ReadDir(name string) ([]fs.DirEntry, error) {
	ents, err := r.inner.ReadDir(name)
	if err != nil {
		return ents, err
	}
	rp, ok := r.real(name)
	if !ok {
		return ents, nil
	}
	r.dirs[rp] = true
	for _, e := range ents {
		p := path.Join(rp, e.Name())
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			if t, err := r.inner.Readlink(p); err == nil {
				r.links[cleanRel(p)] = t
			}
		case e.IsDir():
			r.dirs[cleanRel(p)] = true
		}
		// Regular files listed but not read are left out: replay reads them as absent.
	}
	return ents, nil
}

func (r *recorder) Stat(name string) (fs.FileInfo, error) {
	fi, err := r.inner.Stat(name)
	if err == nil && fi.IsDir() {
		if rp, ok := r.real(name); ok {
			r.dirs[rp] = true
		}
	}
	return fi, err
}

func (r *recorder) Lstat(name string) (fs.FileInfo, error) {
	return r.inner.Lstat(name)
}

// readString reads a sysfs attribute and trims the trailing newline and blanks.
func readString(f fsys, name string) (string, error) {
	b, err := f.ReadFile(name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readOpt reads an attribute that may be absent or unreadable (e.g. speed on a link
// that is down returns EINVAL): "" then.
func readOpt(f fsys, name string) string {
	s, _ := readString(f, name)
	return s
}

// linkBase returns the last element of a symlink's target ("mlx5_core" for a driver
// link), "" when the link is absent.
func linkBase(f fsys, name string) string {
	t, err := f.Readlink(name)
	if err != nil {
		return ""
	}
	return path.Base(t)
}
