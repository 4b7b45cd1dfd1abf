package controlplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"go.uber.org/zap/zaptest"

	"github.com/offlane/offlane/controlplane"
)

// testEnv is a server on a bbolt file in a temp dir behind httptest.
type testEnv struct {
	t    *testing.T
	dir  string
	cfg  controlplane.ServerConfig
	srv  *controlplane.Server
	hs   *httptest.Server
	url  string
	ctx  context.Context
	stop func()
}

var testTokens = map[string]controlplane.Token{
	"tok-admin":  {ProjectID: "admin-proj", Roles: []string{"admin"}},
	"tok-a":      {ProjectID: "proj-a", Roles: []string{"member"}},
	"tok-b":      {ProjectID: "proj-b", Roles: []string{"member"}},
	"tok-reader": {ProjectID: "proj-a", Roles: []string{"reader"}},
}

func newEnv(t *testing.T, auth controlplane.AuthMode) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir(), ctx: context.Background()}
	e.cfg = controlplane.ServerConfig{DataDir: e.dir, Auth: auth, Logger: zaptest.NewLogger(t)}
	if auth == controlplane.AuthToken {
		e.cfg.Tokens = testTokens
	}
	e.start()
	t.Cleanup(e.close)
	return e
}

func (e *testEnv) start() {
	e.t.Helper()
	srv, err := controlplane.NewServer(e.ctx, e.cfg)
	if err != nil {
		e.t.Fatalf("NewServer: %v", err)
	}
	e.srv = srv
	e.hs = httptest.NewServer(srv.Handler())
	e.url = e.hs.URL
}

func (e *testEnv) close() {
	if e.hs != nil {
		e.hs.Close()
		e.hs = nil
	}
	if e.srv != nil {
		if err := e.srv.Close(); err != nil {
			e.t.Errorf("close server: %v", err)
		}
		e.srv = nil
	}
}

// restart closes the server and the bbolt file and opens them again.
func (e *testEnv) restart() {
	e.t.Helper()
	e.close()
	e.start()
}

// client is a gophercloud networking client; token "" sends none; project sets
// X-Project-Id (noauth).
func (e *testEnv) client(token string) *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{HTTPClient: *e.hs.Client()}
	if token != "" {
		pc.SetToken(token)
	}
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: e.url + "/", ResourceBase: e.url + "/v2.0/"}
}

// raw sends a request and returns status and decoded body.
func (e *testEnv) raw(method, path, token, body string) (int, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			e.t.Fatalf("%s %s: status %d, body not JSON: %q", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, m
}

// wantErr checks a gophercloud error's status and NeutronError type.
func wantErr(t *testing.T, err error, status int, typ string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %d %s, got success", status, typ)
	}
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) {
		t.Fatalf("want %d %s, got %v", status, typ, err)
	}
	if ue.Actual != status {
		t.Fatalf("want status %d %s, got %d: %s", status, typ, ue.Actual, ue.Body)
	}
	var body struct {
		NeutronError struct{ Type, Message, Detail string }
	}
	if err := json.Unmarshal(ue.Body, &body); err != nil {
		t.Fatalf("error body is not a NeutronError: %q", ue.Body)
	}
	if body.NeutronError.Type != typ {
		t.Fatalf("want error type %s, got %s: %s", typ, body.NeutronError.Type, body.NeutronError.Message)
	}
	if body.NeutronError.Message == "" {
		t.Fatalf("error %s has no message", typ)
	}
}
