package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/offlane/offlane/controlplane"
)

// HTTPState is the DesiredState of an agent on another node than `offlane serve`: it
// talks to the server's agent API (/v2.0/offlane/..., admin only). The agent's watch
// loop reconnects with backoff when the stream breaks and resyncs fully when the server
// answers 410 Gone (compacted history).
type HTTPState struct {
	base   string // scheme://host[:port][/prefix]/v2.0/
	client *http.Client
	token  string
	head   atomic.Int64
}

var _ DesiredState = (*HTTPState)(nil)

// NewHTTPState talks to the API at base (e.g. http://10.0.0.1:9696/) with client (nil:
// http.DefaultClient; its Timeout must be 0, the watch is a long request), sending token
// as X-Auth-Token when not empty.
func NewHTTPState(base string, client *http.Client, token string) (*HTTPState, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("agent: API URL %q: want http://HOST:PORT or https://HOST:PORT", base)
	}
	if client == nil {
		client = http.DefaultClient
	}
	p := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v2.0")
	return &HTTPState{base: u.Scheme + "://" + u.Host + p + "/v2.0/", client: client, token: token}, nil
}

// httpError is a non-2xx answer, with the server's NeutronError message.
// ErrRefused is the server refusing the agent's credentials (HTTP 401 or 403): retrying
// cannot help, so the agent stops with it instead of backing off for ever.
var ErrRefused = errors.New("the server refused the agent's token: the agent endpoints need an admin token (--token)")

type httpError struct {
	Method, Path string
	Status       int
	Message      string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Message)
}

func (h *HTTPState) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if h.token != "" {
		req.Header.Set("X-Auth-Token", h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var ne struct {
			NeutronError struct{ Message string } `json:"NeutronError"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &ne) == nil && ne.NeutronError.Message != "" {
			msg = ne.NeutronError.Message
		}
		he := &httpError{Method: method, Path: "/v2.0/" + path, Status: resp.StatusCode, Message: msg}
		switch resp.StatusCode {
		case http.StatusGone:
			return nil, fmt.Errorf("%w: %w", controlplane.ErrCompacted, he)
		case http.StatusNotFound:
			return nil, fmt.Errorf("%w: %w", controlplane.ErrNotFound, he)
		case http.StatusUnauthorized, http.StatusForbidden:
			return nil, fmt.Errorf("%w: %w", ErrRefused, he)
		}
		return nil, he
	}
	return resp, nil
}

func (h *HTTPState) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := h.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s /v2.0/%s: decode the answer: %w", method, path, err)
	}
	return nil
}

// Load implements DesiredState.
func (h *HTTPState) Load(ctx context.Context) (*controlplane.State, error) {
	var st controlplane.State
	if err := h.call(ctx, http.MethodGet, "offlane/state", nil, &st); err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	h.bump(st.Revision)
	return &st, nil
}

func (h *HTTPState) bump(rev int64) {
	for {
		cur := h.head.Load()
		if rev <= cur || h.head.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// Watch implements DesiredState: one streaming request; the channel closes when the
// stream ends (an error then, also on a clean end: the server went away).
func (h *HTTPState) Watch(ctx context.Context, from int64) (<-chan controlplane.Event, func() error, error) {
	resp, err := h.do(ctx, http.MethodGet, "offlane/watch?from="+strconv.FormatInt(from, 10), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("watch from %d: %w", from, err)
	}
	out := make(chan controlplane.Event, 64)
	var werr atomic.Pointer[error]
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		fail := func(err error) { werr.Store(&err) }
		for sc.Scan() {
			var we controlplane.WireEvent
			if err := json.Unmarshal(sc.Bytes(), &we); err != nil {
				fail(fmt.Errorf("watch: bad event line: %w", err))
				return
			}
			if we.Error != "" {
				if we.Compacted {
					fail(fmt.Errorf("watch: %w: %s", controlplane.ErrCompacted, we.Error))
				} else {
					fail(fmt.Errorf("watch: the server ended the stream: %s", we.Error))
				}
				return
			}
			h.bump(we.Head)
			select {
			case out <- controlplane.Event{Revision: we.Revision, Type: we.Type, Kind: we.Kind, ID: we.ID, Value: []byte(we.Value)}:
			case <-ctx.Done():
				fail(ctx.Err())
				return
			}
		}
		if err := sc.Err(); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			fail(fmt.Errorf("watch: %w", err))
			return
		}
		fail(errors.New("watch: the server closed the stream"))
	}()
	return out, func() error {
		if p := werr.Load(); p != nil {
			return *p
		}
		return nil
	}, nil
}

// Revision implements DesiredState: the newest revision seen in the state or events.
func (h *HTTPState) Revision(context.Context) (int64, error) { return h.head.Load(), nil }

// SetPortBinding implements DesiredState.
func (h *HTTPState) SetPortBinding(ctx context.Context, host, id string, b controlplane.PortBinding) (bool, error) {
	var out struct {
		Written bool `json:"written"`
	}
	err := h.call(ctx, http.MethodPut, "offlane/bindings/"+url.PathEscape(id),
		controlplane.WireBinding{Host: host, Status: b.Status, VIFType: b.VIFType, VIFDetails: b.VIFDetails}, &out)
	if err != nil {
		return false, fmt.Errorf("port %s: set binding: %w", id, err)
	}
	return out.Written, nil
}

// Heartbeat implements DesiredState.
func (h *HTTPState) Heartbeat(ctx context.Context, ag controlplane.Agent) error {
	var out map[string]any
	if err := h.call(ctx, http.MethodPost, "offlane/heartbeat", ag, &out); err != nil {
		return fmt.Errorf("agent %s heartbeat: %w", ag.Host, err)
	}
	return nil
}

// Base is the API root the agent talks to (…/v2.0/).
func (h *HTTPState) Base() string { return h.base }
