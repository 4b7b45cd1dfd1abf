//go:build !linux

package kernel

import "context"

// Plug is Linux-only.
func (p *Plugger) Plug(context.Context, PlugSpec) ([]string, error) { return nil, ErrNotSupported }

// Unplug is Linux-only.
func (p *Plugger) Unplug(context.Context, string, string, string) error { return ErrNotSupported }

// DeleteNamespace is Linux-only.
func (p *Plugger) DeleteNamespace(string) error { return ErrNotSupported }

// Namespaces is not supported off Linux.
func (p *Plugger) Namespaces(string) ([]string, error) { return nil, ErrNotSupported }

// HostLinks is not supported off Linux.
func (p *Plugger) HostLinks(string) ([]string, error) { return nil, ErrNotSupported }

// Links is not supported off Linux.
func (p *Plugger) Links(string, string) ([]string, error) { return nil, ErrNotSupported }

// InNamespace is Linux-only.
func InNamespace(string, func() error) error { return ErrNotSupported }

// TxChecksumOff is Linux-only.
func TxChecksumOff(string, string) error { return ErrNotSupported }
