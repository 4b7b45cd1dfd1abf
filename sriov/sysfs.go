package sriov

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// DirFS is SysFS over a directory: "/" on a live node, a captured tree in tests.
type DirFS struct{ Root string }

func (d DirFS) p(name string) string {
	return filepath.Join(d.Root, filepath.FromSlash(cleanRel(name)))
}

// ReadFile reads a file.
func (d DirFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(d.p(name)) }

// WriteFile writes data in one write(2) to an existing file, without truncating or
// creating it: sysfs attributes take one write.
func (d DirFS) WriteFile(name string, data []byte) error {
	f, err := os.OpenFile(d.p(name), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	return errors.Join(werr, f.Close())
}

// Readlink reads a symlink.
func (d DirFS) Readlink(name string) (string, error) { return os.Readlink(d.p(name)) }

// ReadDir lists a directory, sorted by name.
func (d DirFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(d.p(name)) }

// cleanRel cleans a slash path and makes it root-relative.
func cleanRel(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// resolve follows the symlinks in name (root-relative, lexical, confined to the root)
// and returns the canonical root-relative path; sysfs device links are relative, so
// this also works on captured trees.
func resolve(f SysFS, name string) (string, error) {
	parts := strings.Split(cleanRel(name), "/")
	cur := ""
	for hops := 0; len(parts) > 0; {
		c := parts[0]
		parts = parts[1:]
		if c == "" || c == "." {
			continue
		}
		next := path.Join(cur, c)
		target, err := f.Readlink(next)
		if err != nil {
			// Not a symlink (EINVAL) or absent: keep it; absence shows on the read.
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		var res string
		if path.IsAbs(target) {
			res = cleanRel(target)
		} else {
			res = cleanRel(path.Join(cur, target))
		}
		parts = append(strings.Split(res, "/"), parts...)
		cur = ""
	}
	return cur, nil
}

// readAttr reads a sysfs attribute, trimmed.
func readAttr(f SysFS, name string) (string, error) {
	b, err := f.ReadFile(name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readInt reads an integer attribute.
func readInt(f SysFS, name string) (int, error) {
	s, err := readAttr(f, name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", name, s)
	}
	return n, nil
}

// linkBase is the last element of a symlink's target, "" without the link.
func linkBase(f SysFS, name string) string {
	t, err := f.Readlink(name)
	if err != nil {
		return ""
	}
	return path.Base(t)
}

func exists(f SysFS, name string) bool {
	if _, err := f.ReadDir(name); err == nil {
		return true
	}
	if _, err := f.ReadFile(name); err == nil {
		return true
	}
	_, err := f.Readlink(name)
	return err == nil
}
