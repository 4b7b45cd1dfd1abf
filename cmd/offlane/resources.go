package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// The resource commands (network, subnet, port, router, floatingip, security-group,
// security-group-rule, qos-policy) talk to a running `offlane serve` through the real
// gophercloud v2 networking client, the library operators' own tools use: every request
// body is built and every response decoded by gophercloud, so these commands double as a
// compatibility check of the API. Responses are also kept as raw attribute maps, so the
// output shows every attribute the server returned, not only those gophercloud knows.

const (
	defaultAPIURL  = "http://127.0.0.1:9696"
	envAPIURL      = "OFFLANE_URL"
	envAPIToken    = "OFFLANE_TOKEN"
	envAPICACert   = "OFFLANE_CACERT"
	envAPIProject  = "OFFLANE_PROJECT"
	defaultTimeout = 30 * time.Second
)

// addResourceCmds adds the Neutron resource commands (network, subnet, port, ...).
func addResourceCmds(root *cobra.Command, g *globalOptions) {
	for _, newCmd := range []func(*apiOptions) *cobra.Command{
		newNetworkCmd, newSubnetCmd, newPortCmd, newRouterCmd, newFloatingIPCmd,
		newSecurityGroupCmd, newSecurityGroupRuleCmd, newQoSPolicyCmd, newVifCmd,
	} {
		a := &apiOptions{g: g, getenv: os.Getenv}
		cmd := newCmd(a)
		a.addFlags(cmd)
		root.AddCommand(cmd)
	}
}

// apiOptions are the connection and output flags every resource command shares.
type apiOptions struct {
	g       *globalOptions
	getenv  func(string) string
	url     string
	token   string
	cacert  string
	project string
	timeout time.Duration
	output  string
	columns []string
}

func (a *apiOptions) addFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&a.url, "url", "", "offlane API base URL (env "+envAPIURL+", default "+defaultAPIURL+")")
	f.StringVar(&a.token, "token", "", "token sent as X-Auth-Token (env "+envAPIToken+"; none for a noauth server)")
	f.StringVar(&a.cacert, "cacert", "", "PEM CA bundle to verify an https --url (env "+envAPICACert+")")
	f.StringVar(&a.project, "os-project-id", "", "project to act as on a noauth server, sent as X-Project-Id (env "+envAPIProject+"; a token server takes it from the token)")
	f.DurationVar(&a.timeout, "timeout", defaultTimeout, "give up on the whole command after this long")
	f.StringVarP(&a.output, "output", "o", "table", "output format: table, json, yaml or value")
	f.StringArrayVarP(&a.columns, "column", "c", nil, "show only this attribute (repeatable), e.g. -c id -c name")
}

// validate checks the shared flags without contacting the server.
func (a *apiOptions) validate() error {
	switch a.output {
	case "table", "json", "yaml", "value":
	default:
		return usageErrorf("--output %q: want table, json, yaml or value", a.output)
	}
	for _, c := range a.columns {
		if strings.TrimSpace(c) == "" || strings.ContainsAny(c, " ,") {
			return usageErrorf("--column %q: want one attribute name per flag, e.g. -c id -c name", c)
		}
	}
	if a.timeout <= 0 {
		return usageErrorf("--timeout %v: want a positive duration such as 30s", a.timeout)
	}
	if _, err := a.baseURL(); err != nil {
		return err
	}
	return nil
}

// baseURL returns the API root (scheme://host[:port]/[prefix/]) from --url, OFFLANE_URL
// or the default. A trailing /v2.0 is accepted and dropped.
func (a *apiOptions) baseURL() (string, error) {
	raw, from := a.url, "--url"
	if raw == "" {
		raw, from = a.getenv(envAPIURL), envAPIURL
	}
	if raw == "" {
		raw, from = defaultAPIURL, "default URL"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", usageErrorf("%s %q: want http://HOST:PORT or https://HOST:PORT, e.g. %s", from, raw, defaultAPIURL)
	}
	p := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v2.0")
	return u.Scheme + "://" + u.Host + p + "/", nil
}

// session is a connected API client for one command invocation.
type session struct {
	api    *apiOptions
	client *gophercloud.ServiceClient
	base   string
	kinds  map[string]*kind                     // noun -> kind, for name look-ups
	cache  map[string]map[string]map[string]any // kind noun -> id -> object (list tables)
}

// connect validates the shared flags and builds the gophercloud service client. It does
// not contact the server.
func (a *apiOptions) connect() (*session, error) {
	if err := a.validate(); err != nil {
		return nil, err
	}
	base, _ := a.baseURL()
	project := a.project
	if project == "" {
		project = a.getenv(envAPIProject)
	}
	if project != "" && !idLike.MatchString(project) {
		return nil, usageErrorf("--os-project-id %q: want a project id (letters, digits, '-', '_')", project)
	}
	token := a.token
	if token == "" {
		token = a.getenv(envAPIToken)
	}
	cacert, from := a.cacert, "--cacert"
	if cacert == "" {
		cacert, from = a.getenv(envAPICACert), envAPICACert
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, usageErrorf("%s: %v", from, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("%s %s: no PEM certificate in the file", from, cacert)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	provider := &gophercloud.ProviderClient{
		HTTPClient: http.Client{Transport: loggedTransport{next: transport, log: a.g.logger().Named("api")}},
	}
	provider.UseTokenLock()
	provider.SetToken(token) // empty: no X-Auth-Token header (noauth server)
	provider.UserAgent.Prepend("offlane/" + version)
	// No ReauthFunc: a 401 is reported as it is, there is no identity service to ask.
	client := &gophercloud.ServiceClient{
		ProviderClient: provider,
		Endpoint:       base,
		ResourceBase:   base + "v2.0/",
		Type:           "network",
	}
	if project != "" {
		// Neutron's noauth mode takes the caller's project from this header (a token
		// server ignores it).
		client.MoreHeaders = map[string]string{"X-Project-Id": project}
	}
	return &session{api: a, client: client, base: base, kinds: resourceKinds(), cache: map[string]map[string]map[string]any{}}, nil
}

// loggedTransport logs every API request at debug level (-v): method, URL, status and
// duration, which shows how names were resolved.
type loggedTransport struct {
	next http.RoundTripper
	log  *zap.Logger
}

func (t loggedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		t.log.Debug("request failed", zap.String("method", r.Method), zap.Stringer("url", r.URL), zap.Error(err))
		return resp, err
	}
	t.log.Debug("request", zap.String("method", r.Method), zap.Stringer("url", r.URL),
		zap.Int("status", resp.StatusCode), zap.Duration("took", time.Since(start)))
	return resp, nil
}

// context returns the command's context bounded by --timeout.
func (a *apiOptions) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, a.timeout)
}

// apiError is a Neutron error answer: status, NeutronError type and message.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message)
	switch {
	case e.Status == http.StatusUnauthorized:
		msg += " (pass a valid token with --token or " + envAPIToken + ")"
	case e.Status == http.StatusBadRequest && strings.Contains(e.Message, "tenant_id is specified"):
		msg += " (on a noauth server, say which project you act as: --os-project-id or " + envAPIProject + ", or --project)"
	}
	return msg
}

// apiErr turns a gophercloud or transport error into the message users see: the
// NeutronError type and message of an API answer, or why the server could not be reached.
func (s *session) apiErr(err error) error {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return err
	}
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return parseAPIError(code.Actual, code.Body)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer from the offlane API at %s within --timeout %v", s.base, s.api.timeout)
	}
	var uerr *url.Error
	var nerr net.Error
	if errors.As(err, &uerr) || errors.As(err, &nerr) {
		return fmt.Errorf("cannot reach the offlane API at %s: %w (start it with \"offlane serve\", or point --url or %s at it)", s.base, err, envAPIURL)
	}
	return err
}

// parseAPIError decodes a Neutron error body; anything else is reported by status.
func parseAPIError(status int, body []byte) *apiError {
	var b struct {
		NeutronError *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
			Detail  string `json:"detail"`
		} `json:"NeutronError"`
	}
	if json.Unmarshal(body, &b) == nil && b.NeutronError != nil && (b.NeutronError.Type != "" || b.NeutronError.Message != "") {
		e := &apiError{Status: status, Type: b.NeutronError.Type, Message: b.NeutronError.Message}
		if e.Type == "" {
			e.Type = strings.ReplaceAll(http.StatusText(status), " ", "")
		}
		if d := strings.TrimSpace(b.NeutronError.Detail); d != "" && d != e.Message {
			e.Message += " (" + d + ")"
		}
		return e
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	if msg == "" {
		msg = "(empty body)"
	}
	return &apiError{Status: status, Type: strings.ReplaceAll(http.StatusText(status), " ", ""), Message: msg}
}

func isNotFound(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusNotFound
	}
	return gophercloud.ResponseCodeIs(err, http.StatusNotFound)
}

// kind describes one Neutron resource type for the shared plumbing: how to fetch one,
// how to list by name, how to decode it and how to show it in a list table.
type kind struct {
	noun     string // CLI noun, e.g. "security-group"
	label    string // in messages, e.g. "security group"
	key      string // JSON object key, e.g. "security_group"
	listKey  string // JSON list key, e.g. "security_groups"
	nameAttr string // attribute that names it for resolution ("" = ids only)
	get      func(ctx context.Context, c *gophercloud.ServiceClient, id string) gophercloud.Result
	byName   func(c *gophercloud.ServiceClient, name string) pagination.Pager
	delete   func(ctx context.Context, c *gophercloud.ServiceClient, id string) error
	// typed returns a new pointer to the gophercloud struct (with its extensions) that
	// every answer must decode into, as gophercloud users decode it.
	typed func() any
	// fill, when set, completes a decoded object (e.g. a QoS rule's type).
	fill func(obj map[string]any)
	// cells renders some attributes in the FIELD/VALUE table more readably than the
	// generic rendering (e.g. a security group's rules one line each).
	cells   map[string]func(v any) string
	columns []column
}

// column is one column of a list table, computed from the raw object.
type column struct {
	header string
	value  func(s *session, ctx context.Context, obj map[string]any) string
}

// decodeOne extracts the object under k.key from a gophercloud result, checks it
// decodes into k's gophercloud type, and returns it as an attribute map.
func (s *session) decodeOne(k *kind, r gophercloud.Result) (map[string]any, error) {
	if r.Err != nil {
		return nil, s.apiErr(r.Err)
	}
	return decodeObject(k, r)
}

func decodeObject(k *kind, r gophercloud.Result) (map[string]any, error) {
	var body map[string]json.RawMessage
	if err := r.ExtractInto(&body); err != nil {
		return nil, fmt.Errorf("%s answer is not a JSON object: %w", k.label, err)
	}
	raw, ok := body[k.key]
	if !ok || string(raw) == "null" {
		return nil, fmt.Errorf("%s answer has no %q object", k.label, k.key)
	}
	obj, err := rawObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%s answer: %w", k.label, err)
	}
	if k.typed != nil {
		t := k.typed()
		if err := r.ExtractIntoStructPtr(t, k.key); err != nil {
			return nil, fmt.Errorf("%s answer does not decode into gophercloud's %T: %w", k.label, t, err)
		}
	}
	if k.fill != nil {
		k.fill(obj)
	}
	return obj, nil
}

// rawObject decodes one JSON object keeping numbers exact.
func rawObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, fmt.Errorf("want a JSON object, got %.80s", raw)
	}
	return obj, nil
}

// listAll fetches every page of a list and decodes the objects under k.listKey.
func (s *session) listAll(ctx context.Context, k *kind, pager pagination.Pager) ([]map[string]any, error) {
	page, err := pager.AllPages(ctx)
	if err != nil {
		return nil, s.apiErr(err)
	}
	res, ok := page.(interface {
		ExtractInto(any) error
		ExtractIntoSlicePtr(any, string) error
	})
	if !ok {
		return nil, fmt.Errorf("%s list: unexpected page type %T", k.label, page)
	}
	var body map[string]json.RawMessage
	if err := res.ExtractInto(&body); err != nil {
		return nil, fmt.Errorf("%s list answer is not a JSON object: %w", k.label, err)
	}
	var raws []json.RawMessage
	if r, ok := body[k.listKey]; ok && string(r) != "null" {
		if err := json.Unmarshal(r, &raws); err != nil {
			return nil, fmt.Errorf("%s list answer: %q is not a list: %w", k.label, k.listKey, err)
		}
	}
	objs := make([]map[string]any, 0, len(raws))
	for _, raw := range raws {
		obj, err := rawObject(raw)
		if err != nil {
			return nil, fmt.Errorf("%s list answer: %w", k.label, err)
		}
		if k.fill != nil {
			k.fill(obj)
		}
		objs = append(objs, obj)
	}
	if k.typed != nil && len(objs) > 0 {
		t := reflect.New(reflect.SliceOf(reflect.TypeOf(k.typed()).Elem())).Interface()
		if err := res.ExtractIntoSlicePtr(t, k.listKey); err != nil {
			return nil, fmt.Errorf("%s list answer does not decode into gophercloud's %T: %w", k.label, t, err)
		}
	}
	return objs, nil
}

// idLike reports whether ref can be tried as an id in a URL path: ids are UUIDs, and a
// name with '/', '?' or spaces must not be spliced into the path.
var idLike = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)

// resolve turns a name or id into an id as the openstack CLI does: an exact id first,
// then a unique name. flag names the flag or argument in errors ("" for the positional).
func (s *session) resolve(ctx context.Context, k *kind, ref, flag string) (string, error) {
	obj, err := s.find(ctx, k, ref, flag)
	if err != nil {
		return "", err
	}
	return str(obj["id"]), nil
}

// find is resolve returning the whole object.
func (s *session) find(ctx context.Context, k *kind, ref, flag string) (map[string]any, error) {
	what := fmt.Sprintf("%s %q", k.label, ref)
	if flag != "" {
		what = fmt.Sprintf("%s %q", flag, ref)
	}
	if strings.TrimSpace(ref) == "" {
		return nil, usageErrorf("%s: empty %s name or id", what, k.label)
	}
	if idLike.MatchString(ref) {
		obj, err := s.decodeOne(k, k.get(ctx, s.client, ref))
		if err == nil {
			return obj, nil
		}
		if !isNotFound(err) {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	if k.nameAttr == "" || k.byName == nil {
		return nil, fmt.Errorf("%s: no %s with this id (see \"offlane %s list\")", what, k.label, k.noun)
	}
	objs, err := s.listAll(ctx, k, k.byName(s.client, ref))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var match []map[string]any
	for _, o := range objs {
		if str(o[k.nameAttr]) == ref { // the filter is exact in Neutron; do not trust it blindly
			match = append(match, o)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("%s: no %s has this id or %s (see \"offlane %s list\")", what, k.label, strings.ReplaceAll(k.nameAttr, "_", " "), k.noun)
	case 1:
		return match[0], nil
	}
	ids := make([]string, len(match))
	for i, o := range match {
		ids[i] = str(o["id"])
		if p := str(o["project_id"]); p != "" {
			ids[i] += " (project " + p + ")"
		}
	}
	return nil, fmt.Errorf("%s: %d %ss match this %s, use an id instead: %s", what, len(match), k.label, strings.ReplaceAll(k.nameAttr, "_", " "), strings.Join(ids, ", "))
}

// lookup returns the object of kind k with this id (nil if it cannot be had). It lists
// k once per command: list tables use it to show names instead of ids.
func (s *session) lookup(ctx context.Context, noun, id string) map[string]any {
	k := s.kinds[noun]
	if id == "" || k == nil || k.byName == nil {
		return nil
	}
	m, ok := s.cache[k.noun]
	if !ok {
		m = map[string]map[string]any{}
		if objs, err := s.listAll(ctx, k, k.byName(s.client, "")); err == nil {
			for _, o := range objs {
				m[str(o["id"])] = o
			}
		}
		s.cache[k.noun] = m
	}
	return m[id]
}

// displayName returns the name of the object of kind k with this id, or the id itself
// when it has no name or cannot be found.
func (s *session) displayName(ctx context.Context, noun, id string) string {
	if k := s.kinds[noun]; k != nil {
		if n := str(s.lookup(ctx, noun, id)[k.nameAttr]); n != "" {
			return n
		}
	}
	return id
}

// resourceKinds lists the kinds list tables may look names up in. (Columns refer to
// other kinds by noun through the session, which keeps the kind tables free of
// initialisation cycles.)
func resourceKinds() map[string]*kind {
	m := map[string]*kind{}
	for _, k := range []*kind{networkKind, subnetKind, portKind, routerKind, floatingIPKind,
		securityGroupKind, securityGroupRuleKind, qosPolicyKind} {
		m[k.noun] = k
	}
	return m
}

// str renders a scalar attribute as a string ("" for null or missing).
func str(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		if t {
			return "true"
		}
		return "false"
	default:
		return fmt.Sprint(t)
	}
}

// ---- the shared show / list / delete commands ----

// showOptions is `NOUN show NAME|ID`.
type showOptions struct {
	api  *apiOptions
	kind *kind
	ref  string
}

func newShowCmd(a *apiOptions, k *kind) *cobra.Command {
	o := &showOptions{api: a, kind: k}
	what := "NAME|ID"
	if k.nameAttr == "" {
		what = "ID"
	} else if k.nameAttr != "name" {
		what = "ADDRESS|ID"
	}
	return &cobra.Command{
		Use:   "show " + what,
		Short: "Show one " + k.label + " with all its attributes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ref = args[0]
			return o.run(cmd)
		},
	}
}

func (o *showOptions) run(cmd *cobra.Command) error {
	s, err := o.api.connect()
	if err != nil {
		return err
	}
	ctx, cancel := o.api.context(cmd)
	defer cancel()
	obj, err := s.find(ctx, o.kind, o.ref, "")
	if err != nil {
		return err
	}
	return s.printOne(o.kind, obj)
}

// deleteOptions is `NOUN delete NAME|ID...`: every argument is tried; failures are
// reported one by one and the command fails if any did.
type deleteOptions struct {
	api  *apiOptions
	kind *kind
	refs []string
}

func newDeleteCmd(a *apiOptions, k *kind) *cobra.Command {
	o := &deleteOptions{api: a, kind: k}
	what := "NAME|ID"
	if k.nameAttr == "" {
		what = "ID"
	} else if k.nameAttr != "name" {
		what = "ADDRESS|ID"
	}
	return &cobra.Command{
		Use:   "delete " + what + "...",
		Short: "Delete " + k.label + "s",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.refs = args
			return o.run(cmd)
		},
	}
}

func (o *deleteOptions) run(cmd *cobra.Command) error {
	s, err := o.api.connect()
	if err != nil {
		return err
	}
	ctx, cancel := o.api.context(cmd)
	defer cancel()
	return deleteEach(o.api.g, o.kind.label, o.refs, func(ref string) error {
		id, err := s.resolve(ctx, o.kind, ref, "")
		if err != nil {
			return err
		}
		return s.apiErr(o.kind.delete(ctx, s.client, id))
	})
}

// deleteEach runs del for every reference. One reference: its error as it is. Several:
// each failure on stderr, then a summary error.
func deleteEach(g *globalOptions, label string, refs []string, del func(string) error) error {
	if len(refs) == 1 {
		return del(refs[0])
	}
	failed := 0
	for _, ref := range refs {
		if err := del(ref); err != nil {
			failed++
			fmt.Fprintf(g.stderr, "offlane: delete %s %q: %v\n", label, ref, err)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d %ss not deleted (see above)", failed, len(refs), label)
	}
	return nil
}

// listRun fetches a list and prints it.
func listRun(cmd *cobra.Command, a *apiOptions, k *kind, pager func(ctx context.Context, s *session) (pagination.Pager, error)) error {
	s, err := a.connect()
	if err != nil {
		return err
	}
	ctx, cancel := a.context(cmd)
	defer cancel()
	p, err := pager(ctx, s)
	if err != nil {
		return err
	}
	objs, err := s.listAll(ctx, k, p)
	if err != nil {
		return err
	}
	return s.printList(ctx, k, objs)
}

// mutateRun connects, runs fn (resolving references and calling the API) and prints the
// object fn returns.
func mutateRun(cmd *cobra.Command, a *apiOptions, k *kind, fn func(ctx context.Context, s *session) (gophercloud.Result, error)) error {
	s, err := a.connect()
	if err != nil {
		return err
	}
	ctx, cancel := a.context(cmd)
	defer cancel()
	r, err := fn(ctx, s)
	if err != nil {
		return err
	}
	obj, err := s.decodeOne(k, r)
	if err != nil {
		return err
	}
	return s.printOne(k, obj)
}

// nounCmd is the parent command of one resource type.
func nounCmd(noun, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   noun,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}
