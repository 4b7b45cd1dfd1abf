//go:build !linux

package hwdetect

import "go.uber.org/zap"

// ghwNamer off Linux: ghw's PCI device parsing is Linux-only, so names stay empty.
type ghwNamer struct {
	root string
	log  *zap.Logger
}

func (g *ghwNamer) prefetch() {}

func (g *ghwNamer) Names(string, string) (string, string) { return "", "" }
