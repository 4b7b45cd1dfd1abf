//go:build !linux

package kernel

import "context"

// Ensure is Linux-only.
func (rs *Routers) Ensure(context.Context, RouterInput) ([]string, error) {
	return nil, ErrNotSupported
}

// Delete is Linux-only.
func (rs *Routers) Delete(context.Context, string) error { return ErrNotSupported }

// List is Linux-only.
func (rs *Routers) List() ([]string, error) { return nil, ErrNotSupported }

// Prune is Linux-only.
func (rs *Routers) Prune(context.Context, []string) ([]string, error) { return nil, ErrNotSupported }

// Ruleset is Linux-only.
func (rs *Routers) Ruleset(string) (Ruleset, error) { return Ruleset{}, ErrNotSupported }
