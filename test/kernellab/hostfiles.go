package kernellab

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// hostCopier adds host files to an initramfs tree the way the dynamic loader will look
// for them in the guest: every symlink met on the way to a file is kept as a symlink (so
// /lib64/ld-linux-x86-64.so.2 and usrmerge's /lib -> usr/lib resolve in the guest as on
// the host), and executables bring their shared libraries (ELF DT_NEEDED, recursively,
// plus the ELF interpreter).
type hostCopier struct {
	root string // host root, "/" (a directory in tests)
	t    *tree
	// libDirs are searched for DT_NEEDED names after the object's own RUNPATH/RPATH.
	libDirs []string
	seen    map[string]bool
}

func newHostCopier(root string, t *tree) *hostCopier {
	return &hostCopier{
		root: root, t: t, seen: map[string]bool{},
		libDirs: []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"},
	}
}

func (h *hostCopier) hostPath(p string) string { return filepath.Join(h.root, filepath.FromSlash(p)) }

// add copies the host path p (absolute) into the tree at the same path, with the symlinks
// leading to it, and returns the canonical path of the file.
func (h *hostCopier) add(p string) (string, error) {
	canon, err := h.walk(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(h.hostPath(canon))
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%s is a directory", p)
	}
	if !h.t.has(canon) {
		h.t.hostFile(canon, uint32(fi.Mode().Perm()), h.hostPath(canon))
	}
	return canon, nil
}

// walk resolves p component by component, recording each symlink in the tree, and
// returns the canonical absolute path.
func (h *hostCopier) walk(p string) (string, error) {
	parts := strings.Split(path.Clean("/"+p), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		c := parts[0]
		parts = parts[1:]
		if c == "" {
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(h.hostPath(next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many symlinks", p)
		}
		target, err := os.Readlink(h.hostPath(next))
		if err != nil {
			return "", err
		}
		if e, ok := h.t.entries[cleanTreePath(next)]; !ok || e.kind == kindDir {
			h.t.symlink(next, target)
		}
		var resolved string
		if path.IsAbs(target) {
			resolved = path.Clean(target)
		} else {
			resolved = path.Join(cur, target)
		}
		parts = append(strings.Split(strings.TrimPrefix(resolved, "/"), "/"), parts...)
		cur = "/"
	}
	return cur, nil
}

// addBinary copies an executable (or shared object) and, for ELF files, its interpreter
// and shared libraries, at dest in the guest (dest "" keeps the host path).
func (h *hostCopier) addBinary(p, dest string) error {
	if dest != "" && dest != p {
		canon, err := h.walk(p)
		if err != nil {
			return err
		}
		fi, err := os.Stat(h.hostPath(canon))
		if err != nil {
			return err
		}
		h.t.hostFile(dest, uint32(fi.Mode().Perm()), h.hostPath(canon))
		return h.addDeps(canon)
	}
	canon, err := h.add(p)
	if err != nil {
		return err
	}
	return h.addDeps(canon)
}

// addDeps adds the interpreter and the DT_NEEDED libraries of the ELF file at canon.
func (h *hostCopier) addDeps(canon string) error {
	if h.seen[canon] {
		return nil
	}
	h.seen[canon] = true
	f, err := elf.Open(h.hostPath(canon))
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return nil // a script or data file: nothing to resolve
		}
		return err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return fmt.Errorf("%s: read interpreter: %w", canon, err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		ic, err := h.add(interp)
		if err != nil {
			return fmt.Errorf("%s: interpreter %s: %w", canon, interp, err)
		}
		h.seen[ic] = true
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", canon, err)
	}
	var own []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				own = append(own, strings.ReplaceAll(d, "$ORIGIN", path.Dir(canon)))
			}
		}
	}
	for _, lib := range needed {
		found := ""
		for _, d := range append(own, h.libDirs...) {
			cand := path.Join(d, lib)
			if _, err := os.Stat(h.hostPath(cand)); err == nil {
				found = cand
				break
			}
		}
		if found == "" {
			return fmt.Errorf("%s needs %s, which is not in %v", canon, lib, h.libDirs)
		}
		lc, err := h.add(found)
		if err != nil {
			return err
		}
		if err := h.addDeps(lc); err != nil {
			return err
		}
	}
	return nil
}
