package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/offlane/offlane/agent"
)

// defaultAgentStateDir is where `offlane agent` keeps its state file.
const defaultAgentStateDir = "/var/lib/offlane/agent"

// agentCmdOptions are the flags of `offlane agent`: the node agent's flags and the
// resource commands' connection flags (--url, --token, --cacert).
type agentCmdOptions struct {
	g     *globalOptions
	api   *apiOptions
	agent agentFlags
}

func newAgentCmd(g *globalOptions) *cobra.Command {
	o := &agentCmdOptions{g: g, api: &apiOptions{g: g, getenv: os.Getenv, output: "table", timeout: defaultTimeout}}
	o.agent.g, o.agent.standalone = g, true
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run this node's agent against a remote `offlane serve`",
		Long: `Run the node agent on its own, on a node other than the server's: it reads the desired
state from the API at --url (admin only: with --auth token give an admin --token), follows
its changes, programs this node's OVS and writes back port bindings and heartbeats (its
tunnel endpoint is how other nodes reach it). Stops cleanly on SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.agent.validate(defaultAgentStateDir); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.api.url, "url", "", "offlane API base URL (env "+envAPIURL+", default "+defaultAPIURL+")")
	f.StringVar(&o.api.token, "token", "", "admin token sent as X-Auth-Token (env "+envAPIToken+"; none for a noauth server)")
	f.StringVar(&o.api.cacert, "cacert", "", "PEM CA bundle to verify an https --url (env "+envAPICACert+")")
	o.agent.register(f)
	return cmd
}

// desiredState builds the HTTP client of the remote server from the connection flags.
func (o *agentCmdOptions) desiredState() (*agent.HTTPState, error) {
	sess, err := o.api.connect()
	if err != nil {
		return nil, err
	}
	pc := sess.client.ProviderClient
	// the watch is one long request: no client timeout (each call has its context)
	client := &http.Client{Transport: pc.HTTPClient.Transport}
	st, err := agent.NewHTTPState(sess.base, client, pc.Token())
	if err != nil {
		return nil, usageError{err}
	}
	return st, nil
}

func (o *agentCmdOptions) run(parent context.Context) error {
	if parent == nil {
		parent = context.Background()
	}
	st, err := o.desiredState()
	if err != nil {
		return err
	}
	log := o.g.logger()
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rt, err := o.agent.startAgent(ctx, st, log)
	if err != nil {
		return err
	}
	defer rt.close()
	stopMetrics, err := o.agent.serveMetrics(rt, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	fmt.Fprintf(o.g.stdout, "offlane: agent for host %s programs OVS from %s, desired state from %s\n",
		o.agent.host, o.agent.nodeConfig, st.Base())
	err = rt.run(ctx)
	if err == nil && ctx.Err() == nil {
		err = errors.New("it returned before it was stopped")
	}
	if err != nil {
		return fmt.Errorf("agent stopped: %w", err)
	}
	fmt.Fprintln(o.g.stdout, "offlane: agent stopped")
	return nil
}
