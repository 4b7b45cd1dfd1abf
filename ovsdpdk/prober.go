package ovsdpdk

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/zapr"
	"github.com/ovn-kubernetes/libovsdb/client"
	"go.uber.org/zap"

	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// Prober reads the local OVS's capabilities over OVSDB for `offlane detect`. It
// implements hwdetect.OVSProber.
type Prober struct {
	endpoint string
	tls      *tls.Config
	timeout  time.Duration
	log      *zap.Logger
}

var _ hwdetect.OVSProber = (*Prober)(nil)

// ProberOption tunes a Prober.
type ProberOption func(*Prober)

// WithProberTLS sets the client TLS config for an ssl: endpoint.
func WithProberTLS(c *tls.Config) ProberOption { return func(p *Prober) { p.tls = c } }

// WithProberTimeout bounds the whole probe (default 5 s).
func WithProberTimeout(d time.Duration) ProberOption { return func(p *Prober) { p.timeout = d } }

// WithProberLogger sets the logger (default: none).
func WithProberLogger(l *zap.Logger) ProberOption { return func(p *Prober) { p.log = l } }

// NewProber returns a prober of the OVSDB server at endpoint ("" means DefaultOVSDB).
func NewProber(endpoint string, opts ...ProberOption) *Prober {
	if endpoint == "" {
		endpoint = DefaultOVSDB
	}
	p := &Prober{endpoint: endpoint, timeout: 5 * time.Second, log: zap.NewNop()}
	for _, o := range opts {
		o(p)
	}
	return p
}

// ProbeOVS connects, reads the Open_vSwitch row and disconnects. It changes nothing and
// is safe to retry. When no server answers (socket absent, connection refused, timeout)
// it returns Reachable=false with a Reason and a nil error; it returns an error only for
// a server that answers with an unexpected database (no Open_vSwitch row).
func (p *Prober) ProbeOVS(ctx context.Context) (*hwdetect.OVSInfo, error) {
	info := &hwdetect.OVSInfo{Endpoint: p.endpoint}
	if path, ok := strings.CutPrefix(p.endpoint, "unix:"); ok {
		if _, err := os.Stat(path); err != nil {
			info.Reason = fmt.Sprintf("no OVSDB socket at %s (is ovsdb-server running?)", path)
			return info, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	dbModel, err := vswitchd.FullDatabaseModel()
	if err != nil {
		return nil, err
	}
	lr := zapr.NewLogger(p.log.Named("ovsdb-probe"))
	copts := []client.Option{client.WithEndpoint(p.endpoint), client.WithLogger(&lr)}
	if p.tls != nil {
		copts = append(copts, client.WithTLSConfig(p.tls))
	}
	c, err := client.NewOVSDBClient(dbModel, copts...)
	if err != nil {
		return nil, fmt.Errorf("ovsdb client for %s: %w", p.endpoint, err)
	}
	if err := c.Connect(ctx); err != nil {
		info.Reason = unreachableReason(p.endpoint, err)
		return info, nil
	}
	defer c.Close()
	if _, err := c.Monitor(ctx, c.NewMonitor(client.WithTable(&vswitchd.OpenvSwitch{}), client.WithTable(&vswitchd.Datapath{}))); err != nil {
		if ctx.Err() != nil {
			info.Reason = fmt.Sprintf("ovsdb-server at %s did not answer in %s", p.endpoint, p.timeout)
			return info, nil
		}
		return nil, fmt.Errorf("read Open_vSwitch table at %s: %w", p.endpoint, err)
	}
	var rows []vswitchd.OpenvSwitch
	if err := c.List(ctx, &rows); err != nil {
		return nil, fmt.Errorf("read Open_vSwitch table at %s: %w", p.endpoint, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("ovsdb-server at %s has no Open_vSwitch row (database not initialised)", p.endpoint)
	}
	r := rows[0]
	info.Reachable = true
	info.Version = deref(r.OVSVersion)
	info.DBVersion = deref(r.DbVersion)
	info.DatapathTypes = sortedCopy(r.DatapathTypes)
	info.IfaceTypes = sortedCopy(r.IfaceTypes)
	info.DPDKInitialized = r.DpdkInitialized
	info.DPDKVersion = deref(r.DpdkVersion)
	info.HWOffload = r.OtherConfig["hw-offload"] == "true"
	if len(r.Datapaths) > 0 {
		var dps []vswitchd.Datapath
		if err := c.List(ctx, &dps); err != nil {
			return nil, fmt.Errorf("read Datapath table at %s: %w", p.endpoint, err)
		}
		byUUID := make(map[string]*vswitchd.Datapath, len(dps))
		for i := range dps {
			byUUID[dps[i].UUID] = &dps[i]
		}
		for typ, uuid := range r.Datapaths {
			if dp := byUUID[uuid]; dp != nil && len(dp.Capabilities) > 0 {
				if info.DatapathCapabilities == nil {
					info.DatapathCapabilities = map[string]map[string]string{}
				}
				info.DatapathCapabilities[typ] = maps.Clone(dp.Capabilities)
			}
		}
	}
	return info, nil
}

func sortedCopy(in []string) []string {
	out := append([]string{}, in...)
	sort.Strings(out)
	return out
}

func unreachableReason(endpoint string, err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("connection refused at %s (is ovsdb-server running?)", endpoint)
	case errors.Is(err, syscall.ENOENT):
		return fmt.Sprintf("no OVSDB socket at %s (is ovsdb-server running?)", endpoint)
	case errors.Is(err, syscall.EACCES):
		return fmt.Sprintf("permission denied at %s (run as root or join the openvswitch group)", endpoint)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from %s in time", endpoint)
	}
	return fmt.Sprintf("cannot connect to %s: %v", endpoint, err)
}
