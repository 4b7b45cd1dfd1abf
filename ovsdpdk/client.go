package ovsdpdk

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-logr/zapr"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	"go.uber.org/zap"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// Options configure a Client.
type Options struct {
	// Endpoint is unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT.
	Endpoint string
	// TLS is required for ssl: endpoints (see TLSFromFiles).
	TLS *tls.Config
	// Logger receives connection events (nil: none).
	Logger *zap.Logger
	// ConnectTimeout bounds each connection attempt (default 10 s).
	ConnectTimeout time.Duration
	// BatchSize is the number of ports per transaction in PortAdd/PortDel (default 1000).
	BatchSize int
}

// Client is an OVSDB client of the local Open_vSwitch database with a monitored cache of
// the Open_vSwitch, Bridge, Port and Interface tables. It reconnects by itself (with
// backoff, forever) after ovsdb-server restarts and resynchronises the cache. Writes
// through one Client are serialised; reads come from the cache. Safe for concurrent use.
type Client struct {
	ovs   client.Client
	log   *zap.Logger
	batch int

	writeMu sync.Mutex
	txns    atomic.Int64

	// idx follows the tenant interfaces through the cache's events (index.go)
	idx *tenantIndex
}

// defaultBatch is the ports per transaction: large transactions amortise ovsdb-server's
// per-transaction cost (the Bridge.ports set is rewritten once per transaction).
const defaultBatch = 1000

// Connect connects to ovsdb-server and waits for the initial cache. It fails when the
// server cannot be reached within ctx; later disconnections are repaired in the
// background.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if opts.Endpoint == "" {
		return nil, errors.New("ovsdb: no endpoint")
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("ovsdb").With(zap.String("endpoint", opts.Endpoint))
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	dbModel, err := vswitchd.FullDatabaseModel()
	if err != nil {
		return nil, fmt.Errorf("ovsdb model: %w", err)
	}
	lr := zapr.NewLogger(log)
	// libovsdb panics if a reconnect backoff ever gives up: retry forever, at most
	// every 2 s.
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxInterval = 2 * time.Second
	bo.MaxElapsedTime = 0
	copts := []client.Option{
		client.WithEndpoint(opts.Endpoint),
		client.WithLogger(&lr),
		// Echo after 30 s of silence detects dead TCP peers; it implies reconnect.
		client.WithInactivityCheck(30*time.Second, opts.ConnectTimeout, bo),
	}
	if opts.TLS != nil {
		copts = append(copts, client.WithTLSConfig(opts.TLS))
	}
	ovs, err := client.NewOVSDBClient(dbModel, copts...)
	if err != nil {
		return nil, fmt.Errorf("ovsdb %s: %w", opts.Endpoint, err)
	}
	cctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	if err := ovs.Connect(cctx); err != nil {
		return nil, fmt.Errorf("connect to ovsdb-server at %s: %w", opts.Endpoint, err)
	}
	c := &Client{ovs: ovs, log: log, batch: opts.BatchSize}
	if c.batch <= 0 {
		c.batch = defaultBatch
	}
	if err := c.monitor(cctx); err != nil {
		ovs.Close()
		return nil, err
	}
	// the index's handler first: handlers run in the order they were added, so whoever
	// is woken by an interface change (OnInterfacesChanged) finds the index past it
	c.idx = newTenantIndex()
	c.ovs.Cache().AddEventHandler(c.idx.handler())
	c.idx.sync(c.ovs.Cache())
	return c, nil
}

// monitor subscribes to the tables offlane reads, without the statistics columns
// (ovs-vswitchd rewrites those every few seconds for every interface).
func (c *Client) monitor(ctx context.Context) error {
	schema := vswitchd.Schema()
	m := c.ovs.NewMonitor()
	for _, table := range []string{vswitchd.OpenvSwitchTable, vswitchd.BridgeTable, vswitchd.PortTable, vswitchd.InterfaceTable, vswitchd.QoSTable, vswitchd.QueueTable} {
		var cols []string
		for col := range schema.Tables[table].Columns {
			if col != "statistics" {
				cols = append(cols, col)
			}
		}
		slices.Sort(cols)
		m.Tables = append(m.Tables, client.TableMonitor{Table: table, Fields: cols})
	}
	if _, err := c.ovs.Monitor(ctx, m); err != nil {
		return fmt.Errorf("monitor Open_vSwitch database: %w", err)
	}
	return nil
}

// Close disconnects for good.
func (c *Client) Close() { c.ovs.Close() }

// Connected reports whether the client is connected right now (it reconnects by itself).
// libovsdb's Connected stays true while it reconnects; its RPC client (and so the
// current endpoint) is unset until the new connection and monitors are up.
func (c *Client) Connected() bool { return c.ovs.Connected() && c.ovs.CurrentEndpoint() != "" }

// Transactions is the number of OVSDB transactions this client has committed.
func (c *Client) Transactions() int64 { return c.txns.Load() }

// TLSFromFiles builds the client TLS config for an ssl: endpoint from PEM files. The
// server certificate is verified against the CA, without a host name check: OVS PKI
// certificates (ovs-pki) do not carry the server's host name.
func TLSFromFiles(keyFile, certFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls key %s / certificate %s: %w", keyFile, certFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls ca_cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("tls ca_cert %s: no PEM certificate found", caFile)
	}
	return &tls.Config{
		Certificates:       []tls.Certificate{cert},
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // the chain is verified below, only the host name is not
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("ovsdb server sent no certificate")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return fmt.Errorf("ovsdb server certificate: %w", err)
				}
				certs[i] = c
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		},
	}, nil
}

// ovsRow returns the Open_vSwitch row from the cache (nil when the database has none).
func (c *Client) ovsRow(ctx context.Context) (*vswitchd.OpenvSwitch, error) {
	var rows []*vswitchd.OpenvSwitch
	if err := c.ovs.List(ctx, &rows); err != nil {
		return nil, fmt.Errorf("read Open_vSwitch table: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return rows[0], nil
}

// Snapshot reads the Open_vSwitch, Bridge, Port and Interface rows from the cache.
func (c *Client) Snapshot(ctx context.Context) (*State, error) {
	st := &State{Bridges: map[string]*vswitchd.Bridge{}, Ports: map[string]*vswitchd.Port{}, Interfaces: map[string]*vswitchd.Interface{}}
	var err error
	if st.OVS, err = c.ovsRow(ctx); err != nil {
		return nil, err
	}
	var brs []*vswitchd.Bridge
	var ports []*vswitchd.Port
	var ifaces []*vswitchd.Interface
	if err := c.ovs.List(ctx, &brs); err != nil {
		return nil, fmt.Errorf("read Bridge table: %w", err)
	}
	if err := c.ovs.List(ctx, &ports); err != nil {
		return nil, fmt.Errorf("read Port table: %w", err)
	}
	if err := c.ovs.List(ctx, &ifaces); err != nil {
		return nil, fmt.Errorf("read Interface table: %w", err)
	}
	for _, b := range brs {
		st.Bridges[b.Name] = b
	}
	for _, p := range ports {
		st.Ports[p.UUID] = p
	}
	for _, i := range ifaces {
		st.Interfaces[i.UUID] = i
	}
	return st, nil
}

// errNothingToDo tells transact that build found the database already as wanted.
var errNothingToDo = errors.New("nothing to do")

// maxAttempts bounds how often transact rebuilds and resends after losing the connection.
const maxAttempts = 5

// transact builds operations from the current cache and commits them as one transaction,
// then waits until the cache shows the transaction (read-your-writes). The transaction
// also bumps Open_vSwitch next_cfg, like ovs-vsctl, so callers can wait for
// ovs-vswitchd (WaitApplied). If the connection drops, it waits for the reconnect and
// calls build again on the refreshed cache: a transaction that did commit is then seen
// and not repeated, so retries never duplicate rows. It returns the new next_cfg
// (0 when nothing was sent because build returned errNothingToDo).
func (c *Client) transact(ctx context.Context, what string, build func() ([]ovsdb.Operation, error)) (int, error) {
	for attempt := 1; ; attempt++ {
		ops, err := build()
		if errors.Is(err, errNothingToDo) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		ovsRow, err := c.ovsRow(ctx)
		if err != nil {
			return 0, err
		}
		if ovsRow != nil {
			bump, err := c.ovs.Where(&vswitchd.OpenvSwitch{UUID: ovsRow.UUID}).Mutate(ovsRow,
				model.Mutation{Field: &ovsRow.NextCfg, Mutator: ovsdb.MutateOperationAdd, Value: 1})
			if err != nil {
				return 0, fmt.Errorf("%s: next_cfg: %w", what, err)
			}
			ops = append(ops, bump...)
			ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationSelect, Table: vswitchd.OpenvSwitchTable,
				Where:   []ovsdb.Condition{{Column: "_uuid", Function: ovsdb.ConditionEqual, Value: ovsdb.UUID{GoUUID: ovsRow.UUID}}},
				Columns: []string{"next_cfg"}})
		}
		res, err := c.ovs.Transact(ctx, ops...)
		if err != nil {
			if isDisconnect(err) && attempt < maxAttempts && ctx.Err() == nil {
				c.log.Info("connection lost during transaction; retrying on the refreshed cache", zap.String("what", what), zap.Int("attempt", attempt))
				if err := c.waitConnected(ctx); err != nil {
					return 0, fmt.Errorf("%s: %w", what, err)
				}
				continue
			}
			return 0, fmt.Errorf("%s: transact: %w", what, err)
		}
		if opErrs, err := ovsdb.CheckOperationResults(res, ops); err != nil {
			return 0, fmt.Errorf("%s: %w", what, errors.Join(append([]error{err}, toErrs(opErrs)...)...))
		}
		c.txns.Add(1)
		next := 0
		if ovsRow != nil {
			sel := res[len(ops)-1]
			if len(sel.Rows) == 1 {
				next = toInt(sel.Rows[0]["next_cfg"])
			}
			if err := c.waitCache(ctx, func(o *vswitchd.OpenvSwitch) bool { return o.NextCfg >= next }); err != nil {
				return next, fmt.Errorf("%s: committed, but %w", what, err)
			}
		} else {
			// The transaction created the Open_vSwitch row: wait until the cache has it.
			if err := c.waitCache(ctx, func(*vswitchd.OpenvSwitch) bool { return true }); err != nil {
				return 0, fmt.Errorf("%s: committed, but %w", what, err)
			}
		}
		return next, nil
	}
}

func toErrs(in []ovsdb.OperationError) []error {
	out := make([]error, len(in))
	for i, e := range in {
		out[i] = e
	}
	return out
}

func toInt(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case int:
		return n
	case int64:
		return int(n)
	}
	return 0
}

// isDisconnect reports errors after which the transaction may or may not have committed
// and the client is reconnecting (libovsdb maps a shut-down RPC client to ErrNotConnected).
func isDisconnect(err error) bool {
	return errors.Is(err, client.ErrNotConnected)
}

func (c *Client) waitConnected(ctx context.Context) error {
	for !c.Connected() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the OVSDB connection: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Polling the cache starts fast (a monitor update usually follows a transaction reply
// within a millisecond) and backs off.
const (
	defaultPollStart = 200 * time.Microsecond
	defaultPollMax   = 20 * time.Millisecond
)

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitCache polls the cached Open_vSwitch row until cond holds.
func (c *Client) waitCache(ctx context.Context, cond func(*vswitchd.OpenvSwitch) bool) error {
	delay := defaultPollStart
	for {
		if o, err := c.ovsRow(ctx); err == nil && o != nil && cond(o) {
			return nil
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return fmt.Errorf("the cache did not catch up: %w", err)
		}
		delay = min(2*delay, defaultPollMax)
	}
}

// WaitApplied waits until ovs-vswitchd has applied the database up to next_cfg (its
// cur_cfg reached it), like ovs-vsctl without --no-wait. next_cfg 0 returns at once.
func (c *Client) WaitApplied(ctx context.Context, nextCfg int) error {
	if nextCfg == 0 {
		return nil
	}
	if err := c.waitCache(ctx, func(o *vswitchd.OpenvSwitch) bool { return o.CurCfg >= nextCfg }); err != nil {
		return fmt.Errorf("ovs-vswitchd did not apply configuration %d (is it running?): %w", nextCfg, err)
	}
	return nil
}

// namer hands out named UUIDs for the rows one transaction inserts.
type namer struct{ n int }

func (n *namer) next() string {
	n.n++
	return fmt.Sprintf("row%d", n.n)
}
