//go:build !linux

package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/ovsdpdk"
)

// directPorts: SR-IOV is Linux only; the agent runs without direct ports.
func directPorts(context.Context, *ovsdpdk.Ports, *zap.Logger) (*agent.DirectPorts, func(), error) {
	return nil, func() {}, nil
}
