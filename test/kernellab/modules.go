package kernellab

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// modName is a module's canonical name: the file's base without .ko[.xz|.zst|.gz], with
// dashes as underscores (the kernel treats them as equal).
func modName(file string) string {
	b := path.Base(file)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// moduleIndex is a kernel's modules.dep (from depmod) and modules.builtin.
type moduleIndex struct {
	files   map[string]string   // name -> file relative to lib/modules/<ver>
	deps    map[string][]string // name -> names it depends on
	builtin map[string]bool
}

// parseModulesDep reads modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko").
func parseModulesDep(r io.Reader) (*moduleIndex, error) {
	mi := &moduleIndex{files: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || file == "" {
			return nil, fmt.Errorf("modules.dep line %d: want \"file: deps\", got %q", n, line)
		}
		name := modName(file)
		mi.files[name] = file
		for _, d := range strings.Fields(rest) {
			mi.deps[name] = append(mi.deps[name], modName(d))
		}
	}
	return mi, sc.Err()
}

// addBuiltin reads modules.builtin (one "kernel/x/y.ko" per line).
func (mi *moduleIndex) addBuiltin(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			mi.builtin[modName(l)] = true
		}
	}
	return sc.Err()
}

// closure returns the files (relative to lib/modules/<ver>) of the named modules and
// everything they depend on, sorted; built-in modules need no file. An unknown name is
// an error naming it.
func (mi *moduleIndex) closure(names []string) ([]string, error) {
	seen := map[string]bool{}
	var missing []string
	var visit func(string)
	visit = func(n string) {
		n = strings.ReplaceAll(n, "-", "_")
		if seen[n] {
			return
		}
		seen[n] = true
		if mi.builtin[n] {
			return
		}
		if _, ok := mi.files[n]; !ok {
			missing = append(missing, n)
			return
		}
		for _, d := range mi.deps[n] {
			visit(d)
		}
	}
	for _, n := range names {
		visit(n)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("kernel modules not found (neither in modules.dep nor built in): %s", strings.Join(missing, ", "))
	}
	var files []string
	for n := range seen {
		if f, ok := mi.files[n]; ok {
			files = append(files, f)
		}
	}
	sort.Strings(files)
	return files, nil
}
