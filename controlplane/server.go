package controlplane

// Starting the server in a Go test (for the CLI and agent tests):
//
//	srv, err := controlplane.NewServer(ctx, controlplane.ServerConfig{
//		DataDir: t.TempDir(),                       // bbolt file DataDir/offlane.db
//		Auth:    controlplane.AuthNoAuth,            // or AuthToken with Tokens below
//		Tokens:  map[string]controlplane.Token{"tok-a": {ProjectID: "proj-a", Roles: []string{"member"}}},
//		Logger:  zaptest.NewLogger(t),               // nil means zap.NewNop()
//	})
//	t.Cleanup(func() { srv.Close() })
//	hs := httptest.NewServer(srv.Handler())
//	t.Cleanup(hs.Close)                               // close hs before srv: LIFO cleanups do
//	pc := &gophercloud.ProviderClient{HTTPClient: *hs.Client()}
//	pc.SetToken("tok-a")                              // token auth: sent as X-Auth-Token
//	client := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: hs.URL + "/", ResourceBase: hs.URL + "/v2.0/"}
//	// then e.g. networks.Create(ctx, client, networks.CreateOpts{Name: "n1", ProjectID: "p1"}).Extract()
//
// With noauth every caller is admin; a new resource's project comes from the body's
// project_id/tenant_id, else the X-Project-Id header (client.MoreHeaders), else it is a
// 400 — except subnets and ports, which default to their network's project.
//
// SegmentConfig's zero value is the out-of-the-box default (tenant networks VXLAN with VNIs
// 1–65535, flat and VLAN provider networks on any physical network name, 1500 underlay
// MTU). Reopening the same DataDir with a new Server sees every write the old one
// acknowledged.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"

	"go.uber.org/zap"
)

// AuthMode selects how API requests are authenticated.
type AuthMode string

const (
	// AuthNoAuth makes every request admin; the project of a new resource comes from the
	// body's project_id/tenant_id (or the X-Project-Id header), as Neutron's noauth does.
	AuthNoAuth AuthMode = "noauth"
	// AuthToken looks X-Auth-Token up in ServerConfig.Tokens; missing or unknown → 401.
	AuthToken AuthMode = "token"
)

// Token is what a token grants: one project and its roles (admin, member, reader).
type Token struct {
	ProjectID string   `json:"project_id"`
	Roles     []string `json:"roles"`
}

// ServerConfig configures NewServer.
type ServerConfig struct {
	// DataDir holds the bbolt file offlane.db; created if missing. Ignored when Store is set.
	DataDir string
	// Store, when non-nil, is used instead of opening DataDir (the server does not close it).
	Store Store
	// Auth is AuthNoAuth (the default when empty) or AuthToken.
	Auth AuthMode
	// Tokens maps X-Auth-Token values to their grant (AuthToken only).
	Tokens map[string]Token
	// SegmentConfig holds segment ranges and MTUs; the zero value is the default.
	SegmentConfig SegmentConfig
	// Logger receives request errors; nil means no logging.
	Logger *zap.Logger
}

// Server is the Neutron v2.0 API over a Store.
type Server struct {
	store     Store
	ownsStore bool
	auth      AuthMode
	tokens    map[string]Token
	segs      segmentPlan
	log       *zap.Logger
	handler   http.Handler
	// collections by URL path under /v2.0 ("networks", "qos/policies").
	collections map[string]*collection
	cache       *decodeCache
	hints       *ipHints
}

// DBFileName is the bbolt file NewServer opens under ServerConfig.DataDir.
const DBFileName = "offlane.db"

// NewServer opens (or creates) the store and returns a server ready to serve.
// It fails on a bad SegmentConfig, an unknown AuthMode, or a store that cannot be opened
// (for example another process holds the bbolt file lock).
func NewServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{auth: cfg.Auth, tokens: cfg.Tokens, log: log.Named("api"), cache: newDecodeCache(), hints: &ipHints{next: map[string]netip.Addr{}}}
	switch s.auth {
	case "":
		s.auth = AuthNoAuth
	case AuthNoAuth, AuthToken:
	default:
		return nil, fmt.Errorf("auth mode %q: want %q or %q", cfg.Auth, AuthNoAuth, AuthToken)
	}
	if s.auth == AuthToken && len(s.tokens) == 0 {
		return nil, errors.New("auth mode token needs at least one token (tokens file empty?)")
	}
	for tok, t := range s.tokens {
		if err := t.validate(); err != nil {
			return nil, fmt.Errorf("token %.4s…: %w", tok, err)
		}
	}
	segs, err := cfg.SegmentConfig.plan()
	if err != nil {
		return nil, err
	}
	s.segs = segs
	if cfg.Store != nil {
		s.store = cfg.Store
	} else {
		if cfg.DataDir == "" {
			return nil, errors.New("data dir: empty (set ServerConfig.DataDir)")
		}
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
		}
		st, err := OpenBolt(ctx, filepath.Join(cfg.DataDir, DBFileName), BoltOptions{Logger: log})
		if err != nil {
			return nil, err
		}
		s.store, s.ownsStore = st, true
	}
	s.collections = map[string]*collection{}
	for _, c := range []*collection{
		s.networkCollection(), s.subnetCollection(), s.portCollection(), s.routerCollection(),
		s.floatingIPCollection(), s.secGroupCollection(), s.secGroupRuleCollection(), s.qosPolicyCollection(),
	} {
		s.collections[c.name] = c
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP handler serving the API (mount it at the root).
func (s *Server) Handler() http.Handler { return s.handler }

// Store returns the server's store (for watchers such as the agent).
func (s *Server) Store() Store { return s.store }

// Close closes the store if the server opened it. Stop serving HTTP first.
func (s *Server) Close() error {
	if s.ownsStore {
		return s.store.Close()
	}
	return nil
}
