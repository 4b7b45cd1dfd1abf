package kernellab

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"
)

// kernelRef names one Debian kernel build: its ABI ("6.1.0-56-amd64") and the Debian
// package version ("6.1.192-2") shared by linux-image-<ABI>, linux-headers-<ABI> and
// linux-source-<major.minor>.
type kernelRef struct {
	ABI     string
	Version string
}

// key is the cache directory name of the kernel.
func (k kernelRef) key() string { return k.ABI + "_" + strings.ReplaceAll(k.Version, ":", "%3a") }

// series is the linux-source package suffix: "6.1" for ABI "6.1.0-56-amd64".
func (k kernelRef) series() string {
	parts := strings.SplitN(k.ABI, ".", 3)
	if len(parts) < 2 {
		return k.ABI
	}
	return parts[0] + "." + parts[1]
}

var reHeadersDep = regexp.MustCompile(`linux-headers-(\d+\.\d+\.\d+-\d+-[a-z0-9-]+) \(= ([^)\s]+)\)`)

// parseHeadersDepends reads the Depends field of the installed linux-headers-amd64
// metapackage ("linux-headers-6.1.0-56-amd64 (= 6.1.192-2)"): the kernel whose headers
// are installed is the one the lab boots, so netdevsim builds against matching headers.
func parseHeadersDepends(s string) (kernelRef, error) {
	m := reHeadersDep.FindStringSubmatch(s)
	if m == nil {
		return kernelRef{}, fmt.Errorf("linux-headers-amd64 depends on %q: no \"linux-headers-<abi> (= <version>)\" in it", strings.TrimSpace(s))
	}
	return kernelRef{ABI: m[1], Version: m[2]}, nil
}

// hasXenPVHNote looks for the "Xen" ELF note of type XEN_ELFNOTE_PHYS32_ENTRY (18),
// the PVH entry point qemu uses.
func hasXenPVHNote(b []byte) bool {
	for len(b) >= 12 {
		namesz := binary.LittleEndian.Uint32(b[0:4])
		descsz := binary.LittleEndian.Uint32(b[4:8])
		typ := binary.LittleEndian.Uint32(b[8:12])
		align4 := func(n uint32) int { return int((n + 3) &^ 3) }
		end := 12 + align4(namesz) + align4(descsz)
		if end > len(b) || end <= 12 {
			return false
		}
		name := strings.TrimRight(string(b[12:12+int(namesz)]), "\x00")
		if name == "Xen" && typ == 18 {
			return true
		}
		b = b[end:]
	}
	return false
}
