package controlplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// apiError is a Neutron error answer: {"NeutronError": {"type", "message", "detail"}}.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

func newErr(status int, typ, format string, args ...any) *apiError {
	return &apiError{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
}

// badRequest is webob's HTTPBadRequest, Neutron's answer to invalid input.
func badRequest(format string, args ...any) *apiError {
	return newErr(http.StatusBadRequest, "HTTPBadRequest", format, args...)
}

// invalidAttr names the attribute, as Neutron's validators do.
func invalidAttr(attr, format string, args ...any) *apiError {
	return badRequest("Invalid input for %s. Reason: %s.", attr, fmt.Sprintf(format, args...))
}

func notFound(typ, format string, args ...any) *apiError {
	return newErr(http.StatusNotFound, typ, format, args...)
}

func conflict(typ, format string, args ...any) *apiError {
	return newErr(http.StatusConflict, typ, format, args...)
}

// forbidden is Neutron's policy refusal.
func forbidden(rule string) *apiError {
	return newErr(http.StatusForbidden, "PolicyNotAuthorized", "rule:%s is disallowed by policy", rule)
}

type neutronErrorBody struct {
	NeutronError struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		Detail  string `json:"detail"`
	} `json:"NeutronError"`
}

// maxBodyBytes caps request bodies (Neutron's max_request_body_size is 114,688).
const maxBodyBytes = 1 << 20

// caller is who sent a request.
type caller struct {
	projectID string
	admin     bool
	readOnly  bool
	noauth    bool
}

// owns reports whether the caller may act as the owner of a project's resource.
func (c *caller) owns(project string) bool { return c.admin || c.projectID == project }

// request is one API call being served.
type request struct {
	s    *Server
	c    caller
	http *http.Request
	now  string
}

func (s *Server) routes() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	var b []byte
	var err error
	if pe, ok := v.(preEncoded); ok {
		b = pe
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		s.log.Error("encode response", zap.Error(err))
		status = http.StatusInternalServerError
		b = []byte(`{"NeutronError": {"type": "HTTPInternalServerError", "message": "response encoding failed", "detail": ""}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		ae = newErr(http.StatusInternalServerError, "HTTPInternalServerError", "Request failed: internal server error while processing your request.")
	}
	var body neutronErrorBody
	body.NeutronError.Type = ae.Type
	body.NeutronError.Message = ae.Message
	s.writeJSON(w, ae.Status, body)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(p)
			}
			s.writeError(w, r, fmt.Errorf("panic: %v", p))
		}
	}()
	path := strings.Trim(r.URL.Path, "/")
	path = strings.TrimSuffix(path, ".json")
	if path == "" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.writeError(w, r, methodNotAllowed(r))
			return
		}
		s.writeJSON(w, http.StatusOK, s.versions(r))
		return
	}
	segs := strings.Split(path, "/")
	if segs[0] != "v2.0" {
		s.writeError(w, r, notFound("HTTPNotFound", "The resource could not be found."))
		return
	}
	c, err := s.authenticate(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.serveAgentRPC(w, r, c, segs[1:]) {
		return
	}
	rq := &request{s: s, c: c, http: r, now: time.Now().UTC().Format("2006-01-02T15:04:05Z")}
	status, body, err := s.dispatch(rq, segs[1:])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if body == nil {
		w.WriteHeader(status)
		return
	}
	s.writeJSON(w, status, body)
}

func methodNotAllowed(r *http.Request) *apiError {
	return newErr(http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method %s is not allowed for this resource.", r.Method)
}

// authenticate maps the request to a caller (401 on a missing or unknown token).
func (s *Server) authenticate(r *http.Request) (caller, error) {
	if s.auth == AuthNoAuth {
		return caller{admin: true, noauth: true, projectID: r.Header.Get("X-Project-Id")}, nil
	}
	tok := r.Header.Get("X-Auth-Token")
	if tok == "" {
		return caller{}, newErr(http.StatusUnauthorized, "HTTPUnauthorized", "Authentication required: send a token in the X-Auth-Token header.")
	}
	t, ok := s.tokens[tok]
	if !ok {
		return caller{}, newErr(http.StatusUnauthorized, "HTTPUnauthorized", "The request you have made requires authentication: unknown token.")
	}
	c := caller{projectID: t.ProjectID, readOnly: true}
	for _, role := range t.Roles {
		switch role {
		case "admin":
			c.admin, c.readOnly = true, false
		case "member":
			c.readOnly = false
		}
	}
	return c, nil
}

// dispatch routes /v2.0/... (segs after v2.0) and returns status and body.
func (s *Server) dispatch(rq *request, segs []string) (int, any, error) {
	r := rq.http
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	if len(segs) == 0 {
		if !get {
			return 0, nil, methodNotAllowed(r)
		}
		return http.StatusOK, s.resourcesIndex(r), nil
	}
	if segs[0] == "extensions" {
		if !get {
			return 0, nil, methodNotAllowed(r)
		}
		return s.extensions(segs[1:])
	}
	if segs[0] == "qos" && len(segs) >= 2 {
		switch segs[1] {
		case "rule-types":
			if !get {
				return 0, nil, methodNotAllowed(r)
			}
			return s.qosRuleTypes(segs[2:])
		case "policies":
			if len(segs) >= 4 {
				return s.qosRules(rq, segs[2], segs[3], segs[4:])
			}
			segs = append([]string{"qos/policies"}, segs[2:]...)
		}
	}
	col := s.collections[segs[0]]
	if col == nil {
		return 0, nil, notFound("HTTPNotFound", "The resource could not be found.")
	}
	switch {
	case len(segs) == 1:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return s.list(rq, col)
		case http.MethodPost:
			return s.create(rq, col)
		}
	case len(segs) == 2:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return s.show(rq, col, segs[1])
		case http.MethodPut:
			return s.update(rq, col, segs[1])
		case http.MethodDelete:
			return s.delete(rq, col, segs[1])
		}
	case len(segs) >= 3 && segs[2] == "tags" && len(segs) <= 4:
		return s.tags(rq, col, segs[1], segs[3:])
	case len(segs) == 3 && col.actions != nil:
		act := col.actions[segs[2]]
		if act == nil {
			return 0, nil, notFound("HTTPNotFound", "The resource could not be found.")
		}
		if r.Method != http.MethodPut {
			return 0, nil, methodNotAllowed(r)
		}
		return s.action(rq, col, segs[1], act)
	default:
		return 0, nil, notFound("HTTPNotFound", "The resource could not be found.")
	}
	return 0, nil, methodNotAllowed(r)
}

// readBody returns the request's JSON object (400 on anything else).
func readBody(r *http.Request) (map[string]json.RawMessage, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, badRequest("Malformed request body: %v", err)
	}
	if len(b) > maxBodyBytes {
		return nil, newErr(http.StatusRequestEntityTooLarge, "HTTPRequestEntityTooLarge", "Request is too large: the body exceeds %d bytes.", maxBodyBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, badRequest("Resource body required")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, badRequest("Malformed request body: want a JSON object (%s)", jsonErr(err))
	}
	return m, nil
}

func jsonErr(err error) string {
	if err == nil {
		return "null"
	}
	return err.Error()
}

// attrs is one resource's body attributes being decoded, with Neutron's conversions and
// error messages. Every decoder marks the attribute used; done() refuses the rest.
type attrs struct {
	m      map[string]json.RawMessage
	used   map[string]bool
	method string
}

func newAttrs(raw json.RawMessage, member, method string) (*attrs, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, badRequest("Invalid input: '%s' must be a JSON object", member)
	}
	return &attrs{m: m, used: map[string]bool{}, method: method}, nil
}

func (a *attrs) has(name string) bool {
	_, ok := a.m[name]
	return ok
}

func (a *attrs) raw(name string) (json.RawMessage, bool) {
	v, ok := a.m[name]
	if ok {
		a.used[name] = true
	}
	return v, ok
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// forbid refuses attributes this method may not carry (read-only or create-only).
func (a *attrs) forbid(names ...string) error {
	for _, n := range names {
		if a.has(n) {
			if a.method == http.MethodPut {
				return badRequest("Cannot update read-only attribute %s", n)
			}
			return badRequest("Attribute '%s' not allowed in POST", n)
		}
	}
	return nil
}

// done refuses attributes nobody decoded.
func (a *attrs) done() error {
	var extra []string
	for k := range a.m {
		if !a.used[k] {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		return badRequest("Unrecognized attribute(s) '%s'", strings.Join(extra, ", "))
	}
	return nil
}

const maxNameLen = 255

// str decodes a string attribute of at most max bytes; returns whether it was present.
func (a *attrs) str(name string, dst *string, max int) (bool, error) {
	v, ok := a.raw(name)
	if !ok {
		return false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return true, invalidAttr(name, "%s is not a valid string", short(v))
	}
	if max > 0 && len(s) > max {
		return true, invalidAttr(name, "'%s' exceeds maximum length of %d", shortStr(s), max)
	}
	*dst = s
	return true, nil
}

// optStr decodes a string-or-null attribute; empty strings become null when emptyIsNull.
func (a *attrs) optStr(name string, dst **string, max int, emptyIsNull bool) (bool, error) {
	v, ok := a.raw(name)
	if !ok {
		return false, nil
	}
	if isNull(v) {
		*dst = nil
		return true, nil
	}
	var s string
	if _, err := a.str(name, &s, max); err != nil {
		return true, err
	}
	if s == "" && emptyIsNull {
		*dst = nil
		return true, nil
	}
	*dst = &s
	return true, nil
}

// boolean follows Neutron's convert_to_boolean: true/false, "true"/"false" in any case,
// 1/0 and "1"/"0".
func (a *attrs) boolean(name string, dst *bool) (bool, error) {
	v, ok := a.raw(name)
	if !ok {
		return false, nil
	}
	var x any
	if err := json.Unmarshal(v, &x); err == nil {
		switch t := x.(type) {
		case bool:
			*dst = t
			return true, nil
		case string:
			switch strings.ToLower(t) {
			case "true", "1":
				*dst = true
				return true, nil
			case "false", "0":
				*dst = false
				return true, nil
			}
		case float64:
			if t == 0 || t == 1 {
				*dst = t == 1
				return true, nil
			}
		}
	}
	return true, invalidAttr(name, "'%s' cannot be converted to boolean", shortRaw(v))
}

// integer follows Neutron's convert_to_int (numbers or numeric strings) within [min, max].
func (a *attrs) integer(name string, dst *int, min, max int) (bool, error) {
	v, ok := a.raw(name)
	if !ok {
		return false, nil
	}
	n, err := toInt(v)
	if err != nil {
		return true, invalidAttr(name, "'%s' is not an integer", shortRaw(v))
	}
	if n < min || n > max {
		return true, invalidAttr(name, "'%d' is not in range %d through %d", n, min, max)
	}
	*dst = n
	return true, nil
}

// optInt is integer or null.
func (a *attrs) optInt(name string, dst **int, min, max int) (bool, error) {
	v, ok := a.m[name]
	if !ok {
		return false, nil
	}
	if isNull(v) {
		a.used[name] = true
		*dst = nil
		return true, nil
	}
	var n int
	if _, err := a.integer(name, &n, min, max); err != nil {
		return true, err
	}
	*dst = &n
	return true, nil
}

func toInt(v json.RawMessage) (int, error) {
	var x any
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	if err := d.Decode(&x); err != nil {
		return 0, err
	}
	var s string
	switch t := x.(type) {
	case json.Number:
		s = t.String()
	case string:
		s = strings.TrimSpace(t)
	default:
		return 0, errors.New("not a number")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n != int64(int(n)) {
		return 0, errors.New("not an integer")
	}
	return int(n), nil
}

// strList decodes a list of strings (null means empty).
func (a *attrs) strList(name string, dst *[]string, maxItems int) (bool, error) {
	v, ok := a.raw(name)
	if !ok {
		return false, nil
	}
	if isNull(v) {
		*dst = []string{}
		return true, nil
	}
	var l []string
	if err := json.Unmarshal(v, &l); err != nil {
		return true, invalidAttr(name, "'%s' is not a list of strings", shortRaw(v))
	}
	if maxItems > 0 && len(l) > maxItems {
		return true, invalidAttr(name, "at most %d items allowed, got %d", maxItems, len(l))
	}
	if l == nil {
		l = []string{}
	}
	*dst = l
	return true, nil
}

// objList decodes a list of JSON objects into dicts of raw values.
func (a *attrs) objList(name string) ([]map[string]json.RawMessage, bool, error) {
	v, ok := a.raw(name)
	if !ok {
		return nil, false, nil
	}
	if isNull(v) {
		return []map[string]json.RawMessage{}, true, nil
	}
	var l []map[string]json.RawMessage
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, true, invalidAttr(name, "'%s' is not a list of objects", shortRaw(v))
	}
	for _, e := range l {
		if e == nil {
			return nil, true, invalidAttr(name, "'%s' is not a list of objects", shortRaw(v))
		}
	}
	return l, true, nil
}

// dict decodes a JSON object attribute (null means empty).
func (a *attrs) dict(name string, dst *map[string]any) (bool, error) {
	v, ok := a.raw(name)
	if !ok {
		return false, nil
	}
	m := map[string]any{}
	if !isNull(v) {
		if err := json.Unmarshal(v, &m); err != nil || m == nil {
			return true, invalidAttr(name, "'%s' is not a dictionary", shortRaw(v))
		}
	}
	*dst = m
	return true, nil
}

// subStr reads a string field of a nested object.
func subStr(attr string, m map[string]json.RawMessage, key string) (string, bool, error) {
	v, ok := m[key]
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", true, invalidAttr(attr, "%s %s is not a valid string", key, short(v))
	}
	return s, true, nil
}

func short(v json.RawMessage) string {
	return "'" + shortRaw(v) + "'"
}

func shortRaw(v json.RawMessage) string { return shortStr(string(bytes.TrimSpace(v))) }

func shortStr(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// project resolves the owning project of a new resource from the body (project_id or
// tenant_id) and the caller, as Neutron's populate_project_info does.
func (rq *request) project(a *attrs) (string, error) {
	var p, t string
	hasP, err := a.str("project_id", &p, maxNameLen)
	if err != nil {
		return "", err
	}
	hasT, err := a.str("tenant_id", &t, maxNameLen)
	if err != nil {
		return "", err
	}
	switch {
	case hasP && hasT && p != t:
		return "", badRequest("'project_id' and 'tenant_id' do not match")
	case hasT && !hasP:
		p = t
	case !hasP && !hasT:
		p = rq.c.projectID
	}
	if p == "" {
		if rq.c.noauth {
			return "", badRequest("Running without keystone AuthN requires that tenant_id is specified")
		}
		return "", invalidAttr("project_id", "must not be empty")
	}
	if !rq.c.admin && p != rq.c.projectID {
		return "", badRequest("Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges")
	}
	return p, nil
}

// newID returns a time-ordered UUID (version 7, RFC 9562): 48 bits of milliseconds,
// then random bits. Neutron clients treat ids as opaque UUIDs; time order makes new
// objects append to the end of the store's B+tree instead of landing on a random page,
// so each commit writes and fsyncs fewer pages.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(time.Now().UnixMilli()))
	copy(b[:6], ms[2:])
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// update runs fn in one store transaction, turning store conflicts into API errors.
func (rq *request) update(fn func(Tx) error) error {
	_, err := rq.s.store.Update(rq.ctx(), fn)
	return err
}

func (rq *request) view(fn func(ReadTx) error) error {
	return rq.s.store.View(rq.ctx(), fn)
}

func (rq *request) ctx() context.Context {
	// A client hanging up does not cancel its write: once queued it runs (or not) as a
	// whole either way, and running it keeps the outcome the same as if the client had
	// waited (a retry then sees its effect, e.g. the address taken).
	return context.WithoutCancel(rq.http.Context())
}

// getObj decodes the object kind/id into dst; the API error when missing is nf.
func getObj(tx ReadTx, kind, id string, dst any, nf *apiError) error {
	v, err := tx.Get(kind, id)
	if errors.Is(err, ErrNotFound) && nf != nil {
		return nf
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("%s %s: decode: %w", kind, id, err)
	}
	return nil
}

// putObj stores v under kind/id with its index entries.
func putObj(tx Tx, kind, id string, v any, index ...IndexEntry) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s %s: encode: %w", kind, id, err)
	}
	return tx.Put(kind, id, b, index...)
}
