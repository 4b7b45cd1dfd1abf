//go:build !linux

package hwdetect

import "context"

type unsupported struct{}

func (unsupported) EswitchMode(context.Context, string) (string, error) { return "", ErrNotSupported }
func (unsupported) Ethtool(context.Context, string) (*EthtoolInfo, error) {
	return nil, ErrNotSupported
}

func liveSources() (DevlinkReader, EthtoolReader, func()) {
	return unsupported{}, unsupported{}, func() {}
}
