package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/controlplane"
)

// serveOptions are the flags of `offlane serve`.
type serveOptions struct {
	g       *globalOptions
	listen  string
	data    string
	auth    string
	tokens  string
	tlsCert string
	tlsKey  string
	config  string
	agent   agentFlags
}

func newServeCmd(g *globalOptions) *cobra.Command {
	o := &serveOptions{g: g}
	o.agent.g = g
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the Neutron v2.0 API on an embedded store",
		Long: `Serve the Neutron-compatible v2.0 API (networks, subnets, ports, routers, floating IPs,
security groups, QoS) backed by a bbolt file under --data. Stops gracefully on SIGINT or
SIGTERM: in-flight requests finish, then the store is closed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:9696", "address:port to listen on")
	f.StringVar(&o.data, "data", "/var/lib/offlane", "directory of the store file (offlane.db)")
	f.StringVar(&o.auth, "auth", "noauth", "authentication: noauth (every caller is admin) or token")
	f.StringVar(&o.tokens, "tokens", "", "YAML tokens file for --auth token (token: {project_id, roles})")
	f.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (serve HTTPS; needs --tls-key)")
	f.StringVar(&o.tlsKey, "tls-key", "", "TLS key file (needs --tls-cert)")
	f.StringVar(&o.config, "config", "", "YAML file with segment ranges and MTU (see README); defaults without")
	o.agent.register(f)
	return cmd
}

func (o *serveOptions) validate() error {
	switch controlplane.AuthMode(o.auth) {
	case controlplane.AuthNoAuth:
		if o.tokens != "" {
			return usageErrorf("--tokens is only used with --auth token")
		}
	case controlplane.AuthToken:
		if o.tokens == "" {
			return usageErrorf("--auth token needs --tokens FILE (lines `TOKEN: {project_id: P, roles: [member]}`)")
		}
	default:
		return usageErrorf("--auth %q: want noauth or token", o.auth)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageErrorf("--tls-cert and --tls-key go together: give both or neither")
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return usageErrorf("--listen %q: want host:port (%v)", o.listen, err)
	}
	if o.data == "" {
		return usageErrorf("--data: empty; give the directory for the store file")
	}
	if err := o.agent.validate(o.data); err != nil {
		return err
	}
	return nil
}

func (o *serveOptions) run(parent context.Context) error {
	if parent == nil {
		parent = context.Background()
	}
	log := o.g.logger().Named("serve")
	cfg := controlplane.ServerConfig{DataDir: o.data, Auth: controlplane.AuthMode(o.auth), Logger: log}
	if o.tokens != "" {
		toks, err := controlplane.LoadTokens(o.tokens)
		if err != nil {
			return usageError{err}
		}
		cfg.Tokens = toks
	}
	if o.config != "" {
		sc, err := controlplane.LoadSegmentConfig(o.config)
		if err != nil {
			return usageError{err}
		}
		cfg.SegmentConfig = sc
	}
	if o.tlsCert != "" {
		if _, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey); err != nil {
			return usageErrorf("--tls-cert %s / --tls-key %s: %v", o.tlsCert, o.tlsKey, err)
		}
	}
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := controlplane.NewServer(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.Close(); err != nil {
			log.Error("close store", zap.Error(err))
		}
	}()
	var agentDone chan error // nil without --agent: never ready
	if o.agent.enabled {
		agentDone = make(chan error, 1)
		actx, cancelAgent := context.WithCancel(ctx)
		rt, err := o.agent.startAgent(actx, agent.StoreState{Store: srv.Store()}, o.g.logger())
		if err != nil {
			cancelAgent()
			return err
		}
		defer func() { cancelAgent(); <-agentDone; rt.close() }()
		go func() { agentDone <- rt.run(actx) }()
		fmt.Fprintf(o.g.stdout, "offlane: agent for host %s programs OVS from %s\n", o.agent.host, o.agent.nodeConfig)
		stopMetrics, err := o.agent.serveMetrics(rt, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.listen, err)
	}
	// Requests live in ctx: a stop ends the agents' watch streams, so Shutdown need not
	// wait for them.
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(log),
		BaseContext: func(net.Listener) context.Context { return ctx }}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(o.g.stdout, "offlane: serving the Neutron API on %s://%s (auth %s, data %s)\n", scheme, ln.Addr(), o.auth, o.data)
	errc := make(chan error, 1)
	go func() {
		if o.tlsCert != "" {
			errc <- hs.ServeTLS(ln, o.tlsCert, o.tlsKey)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", o.listen, err)
	case err := <-agentDone:
		agentDone <- err      // for the deferred wait
		if ctx.Err() == nil { // not a shutdown: the agent failed
			_ = hs.Close()
			if err == nil {
				err = errors.New("it returned before the server stopped")
			}
			return fmt.Errorf("agent stopped: %w", err)
		}
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", o.listen, err)
	}
	fmt.Fprintln(o.g.stdout, "offlane: stopped")
	return nil
}
