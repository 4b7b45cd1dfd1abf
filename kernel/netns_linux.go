package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted (iproute2's convention).
const netnsDir = "/run/netns"

// nsExists reports whether the named namespace exists.
func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// nsEnsure creates the named namespace unless it exists; it reports whether it did.
func nsEnsure(name string) (bool, error) {
	if err := checkNSName(name); err != nil {
		return false, err
	}
	if nsExists(name) {
		return false, nil
	}
	err := onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			// NewNamed leaves its empty mount point behind when the bind mount fails.
			_ = os.Remove(filepath.Join(netnsDir, name))
		} else {
			_ = ns.Close()
		}
		// NewNamed moved this thread into the new namespace.
		if rerr := netns.Set(orig); rerr != nil {
			return errors.Join(err, errThreadTainted)
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("namespace %s: create: %w", name, err)
	}
	return true, nil
}

// nsDelete deletes the named namespace (its interfaces, and so their veth peers, go with
// it); a missing namespace is not an error.
func nsDelete(name string) error {
	if !nsExists(name) {
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("namespace %s: delete: %w", name, err)
	}
	return nil
}

// nsList returns the named namespaces whose name starts with prefix.
func nsList(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// errThreadTainted marks a thread that could not return to its namespace: it stays
// locked, so the Go runtime ends it with its goroutine.
var errThreadTainted = errors.New("could not return the thread to its namespace")

// onLockedThread runs f on a goroutine locked to its OS thread, for calls that switch the
// thread's namespace. The thread is unlocked unless f reports errThreadTainted: a thread
// left in a foreign namespace stays locked, so it dies with the goroutine.
func onLockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := f()
		if !errors.Is(err, errThreadTainted) {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// InNamespace runs f on an OS thread switched into the named network namespace ("" =
// this process's) and back: sockets f opens stay in that namespace for their life, and
// the rest of the process never runs there. A thread that cannot switch back stays locked
// to its goroutine and dies with it.
func InNamespace(name string, f func() error) error { return inNS(name, f) }

// inNS runs f on a thread inside the named namespace ("" = this process's namespace).
func inNS(name string, f func() error) error {
	if name == "" {
		return f()
	}
	return onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		ns, err := netns.GetFromName(name)
		if err != nil {
			return fmt.Errorf("namespace %s: %w", name, err)
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("namespace %s: enter: %w", name, err)
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			return errors.Join(ferr, errThreadTainted)
		}
		return ferr
	})
}

// sysctl sets a /proc/sys key (dotted, e.g. "net.ipv4.ip_forward") inside the named
// namespace unless it already has the value; it reports whether it wrote.
func sysctl(ns, key, value string) (bool, error) {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	changed := false
	err := inNS(ns, func() error {
		// /proc/sys/net reflects the network namespace of the task that opens it.
		cur, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(cur)) == value {
			return nil
		}
		changed = true
		return os.WriteFile(path, []byte(value), 0o644)
	})
	if err != nil {
		return false, fmt.Errorf("namespace %s: sysctl %s=%s: %w", ns, key, value, err)
	}
	return changed, nil
}

// handleAt opens a netlink handle in the named namespace ("" = this process's) and
// returns its namespace handle too (for moving links there); close both with the closer.
func handleAt(name string) (*netlink.Handle, netns.NsHandle, func(), error) {
	var ns netns.NsHandle
	var err error
	if name == "" {
		ns, err = netns.Get()
	} else {
		ns, err = netns.GetFromName(name)
	}
	if err != nil {
		return nil, netns.None(), nil, fmt.Errorf("namespace %q: %w", name, err)
	}
	// route netlink only: links, addresses, routes and neighbours are all this package
	// needs, and asking for every family also opens XFRM sockets, which a kernel without
	// xfrm_user refuses
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		_ = ns.Close()
		return nil, netns.None(), nil, fmt.Errorf("namespace %q: netlink: %w", name, err)
	}
	return h, ns, func() { _ = h.Close(); _ = ns.Close() }, nil
}
