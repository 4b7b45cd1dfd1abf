package controlplane

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// collection describes one API collection and the store kind behind it.
type collection struct {
	name     string // URL path under /v2.0 ("networks", "qos/policies")
	member   string // JSON key of one object ("network", "policy")
	plural   string // JSON key of a list ("networks", "security_groups")
	kind     string // store kind
	notFound string // Neutron error type for a missing object
	label    string // human name in messages ("Network", "Security group")
	attrs    map[string]bool
	hidden   []string // admin-only attributes
	strip    []string // internal attributes never shown
	indexes  []string // filters backed by a store index of the same name

	newObj  func() storable // a zero model object of this kind
	visible func(rq *request, lk *lookup, m rawObj) bool
	create  func(rq *request, tx Tx, a *attrs) (any, error)
	update  func(rq *request, tx Tx, id string, a *attrs) (any, error)
	del     func(rq *request, tx Tx, id string) error
	actions map[string]func(rq *request, tx Tx, id string, a *attrs) (any, error)
}

// attrNames returns the JSON attribute names of a model struct.
func attrNames(v any) map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}

func (col *collection) missing(id string) *apiError {
	return notFound(col.notFound, "%s %s could not be found.", col.label, id)
}

// lookup caches the networks a visibility decision needs during one read.
type lookup struct {
	s    *Server
	tx   ReadTx
	nets map[string]*Network
}

func (rq *request) lookup(tx ReadTx) *lookup {
	return &lookup{s: rq.s, tx: tx, nets: map[string]*Network{}}
}

func (lk *lookup) network(id string) *Network {
	if n, ok := lk.nets[id]; ok {
		return n
	}
	n, err := lk.s.getNetwork(lk.tx, id, nil)
	if err != nil {
		n = nil
	}
	lk.nets[id] = n
	return n
}

// render turns a stored object into what this caller sees.
func (col *collection) render(rq *request, m rawObj) rawObj {
	m = m.without(col.strip)
	if !rq.c.admin {
		m = m.without(col.hidden)
	}
	return m
}

// renderObj encodes a model object for this caller: as is when nothing is to be
// removed, else through render.
func (col *collection) renderObj(rq *request, v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(col.strip) == 0 && (rq.c.admin || len(col.hidden) == 0) {
		return json.RawMessage(b), nil
	}
	m, err := parseObj(b)
	if err != nil {
		return nil, err
	}
	return col.render(rq, m), nil
}

// listQuery is a parsed list request.
type listQuery struct {
	filters   map[string][]string
	order     []string // filter keys in a stable order
	fields    []string
	sortKeys  []string
	sortDesc  []bool
	limit     int
	marker    string
	reverse   bool
	tagsAll   []string
	tagsAny   []string
	notAll    []string
	notAny    []string
	paginated bool
}

func parseListQuery(col *collection, q url.Values) (*listQuery, error) {
	lq := &listQuery{filters: map[string][]string{}}
	for k, vs := range q {
		switch k {
		case "fields":
			for _, v := range vs {
				for f := range strings.SplitSeq(v, ",") {
					if f != "" {
						lq.fields = append(lq.fields, f)
					}
				}
			}
		case "sort_key":
			lq.sortKeys = vs
		case "sort_dir":
			for _, v := range vs {
				switch v {
				case "asc":
					lq.sortDesc = append(lq.sortDesc, false)
				case "desc":
					lq.sortDesc = append(lq.sortDesc, true)
				default:
					return nil, badRequest("%s is invalid value for sort_dir, valid values are 'asc' and 'desc'", v)
				}
			}
		case "limit":
			n, err := strconv.Atoi(vs[len(vs)-1])
			if err != nil || n < 0 {
				return nil, badRequest("Limit must be an integer 0 or greater and not '%s'", vs[len(vs)-1])
			}
			lq.limit = n
		case "marker":
			lq.marker = vs[len(vs)-1]
		case "page_reverse":
			b, ok := parseBool(vs[len(vs)-1])
			if !ok {
				return nil, badRequest("Invalid value for page_reverse: '%s' is not a boolean", vs[len(vs)-1])
			}
			lq.reverse = b
		case "tags":
			lq.tagsAll = splitTags(vs)
		case "tags-any":
			lq.tagsAny = splitTags(vs)
		case "not-tags":
			lq.notAll = splitTags(vs)
		case "not-tags-any":
			lq.notAny = splitTags(vs)
		default:
			if !col.attrs[k] || slices.Contains(col.strip, k) {
				return nil, badRequest("[%s] is invalid attribute for filtering", k)
			}
			lq.filters[k] = vs
			lq.order = append(lq.order, k)
		}
	}
	slices.Sort(lq.order)
	if len(lq.sortDesc) > 0 && len(lq.sortDesc) != len(lq.sortKeys) {
		return nil, badRequest("The number of sort_keys and sort_dirs must be same")
	}
	for len(lq.sortDesc) < len(lq.sortKeys) {
		lq.sortDesc = append(lq.sortDesc, false)
	}
	for _, k := range lq.sortKeys {
		if !col.attrs[k] || slices.Contains(col.strip, k) {
			return nil, badRequest("%s is an invalid attribute for sort_key", k)
		}
	}
	lq.paginated = lq.limit > 0 || lq.marker != ""
	return lq, nil
}

func splitTags(vs []string) []string {
	var out []string
	for _, v := range vs {
		for t := range strings.SplitSeq(v, ",") {
			if t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "1", "yes", "on":
		return true, true
	case "false", "0", "no", "off":
		return false, true
	}
	return false, false
}

// matches reports whether the rendered object passes every filter.
func (lq *listQuery) matches(m rawObj) (bool, error) {
	for _, k := range lq.order {
		ok, err := matchAttr(k, m.attr(k), lq.filters[k])
		if err != nil || !ok {
			return false, err
		}
	}
	if len(lq.tagsAll)+len(lq.tagsAny)+len(lq.notAll)+len(lq.notAny) > 0 {
		tags := map[string]bool{}
		var l []string
		_ = json.Unmarshal(m.get("tags"), &l)
		for _, t := range l {
			tags[t] = true
		}
		all := func(ts []string) bool {
			for _, t := range ts {
				if !tags[t] {
					return false
				}
			}
			return true
		}
		anyOf := func(ts []string) bool {
			for _, t := range ts {
				if tags[t] {
					return true
				}
			}
			return false
		}
		if len(lq.tagsAll) > 0 && !all(lq.tagsAll) || len(lq.tagsAny) > 0 && !anyOf(lq.tagsAny) ||
			len(lq.notAll) > 0 && all(lq.notAll) || len(lq.notAny) > 0 && anyOf(lq.notAny) {
			return false, nil
		}
	}
	return true, nil
}

// matchAttr compares one attribute with the filter values (any may match), converting
// the query strings to the attribute's type as Neutron's filter conversion does.
func matchAttr(name string, have any, want []string) (bool, error) {
	for _, w := range want {
		switch h := have.(type) {
		case nil:
			if w == "" || strings.EqualFold(w, "none") || w == "null" {
				return true, nil
			}
		case string:
			if h == w {
				return true, nil
			}
		case bool:
			b, ok := parseBool(w)
			if !ok {
				return false, badRequest("Invalid input for %s. Reason: '%s' cannot be converted to boolean.", name, w)
			}
			if b == h {
				return true, nil
			}
		case float64:
			f, err := strconv.ParseFloat(w, 64)
			if err != nil {
				return false, badRequest("Invalid input for %s. Reason: '%s' is not an integer.", name, w)
			}
			if f == h {
				return true, nil
			}
		case []any:
			k, v, kv := strings.Cut(w, "=")
			for _, e := range h {
				switch x := e.(type) {
				case string:
					if x == w {
						return true, nil
					}
				case map[string]any:
					if kv && fmt.Sprint(x[k]) == v {
						return true, nil
					}
				}
			}
		case map[string]any:
			k, v, kv := strings.Cut(w, "=")
			if kv && fmt.Sprint(h[k]) == v {
				return true, nil
			}
		}
	}
	return false, nil
}

// compareAttr orders attribute values: null first, then by type.
func compareAttr(a, b any) int {
	switch x := a.(type) {
	case nil:
		if b == nil {
			return 0
		}
		return -1
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	case float64:
		if y, ok := b.(float64); ok {
			return cmp.Compare(x, y)
		}
	case bool:
		if y, ok := b.(bool); ok {
			switch {
			case x == y:
				return 0
			case !x:
				return -1
			}
			return 1
		}
	}
	if b == nil {
		return 1
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

// listItem is one object of a list answer with its decoded sort keys.
type listItem struct {
	m    rawObj
	id   string
	keys []any
}

func (lq *listQuery) item(m rawObj) listItem {
	it := listItem{m: m, id: str(m, "id")}
	for _, k := range lq.sortKeys {
		it.keys = append(it.keys, m.attr(k))
	}
	return it
}

func (lq *listQuery) compare(a, b listItem) int {
	for i := range lq.sortKeys {
		c := compareAttr(a.keys[i], b.keys[i])
		if lq.sortDesc[i] {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return strings.Compare(a.id, b.id)
}

func (s *Server) list(rq *request, col *collection) (int, any, error) {
	lq, err := parseListQuery(col, rq.http.URL.Query())
	if err != nil {
		return 0, nil, err
	}
	if err := s.beforeList(rq, col); err != nil {
		return 0, nil, err
	}
	var items []listItem
	var marker *listItem
	err = rq.view(func(tx ReadTx) error {
		lk := rq.lookup(tx)
		add := func(id string, v []byte) error {
			m, err := parseObj(bytes.Clone(v))
			if err != nil {
				return fmt.Errorf("%s %s: %w", col.kind, id, err)
			}
			if col.visible != nil && !col.visible(rq, lk, m) {
				return nil
			}
			m = col.render(rq, m)
			ok, err := lq.matches(m)
			if ok {
				items = append(items, lq.item(m))
			}
			return err
		}
		if k, vals := lq.indexed(col); k != "" {
			for _, v := range vals {
				if err := tx.ListBy(col.kind, k, v, add); err != nil {
					return err
				}
			}
			if len(vals) > 1 {
				slices.SortFunc(items, func(a, b listItem) int { return strings.Compare(a.id, b.id) })
			}
		} else if err := tx.List(col.kind, add); err != nil {
			return err
		}
		if lq.marker != "" {
			v, err := tx.Get(col.kind, lq.marker)
			if err != nil {
				return col.missing(lq.marker)
			}
			m, err := parseObj(bytes.Clone(v))
			if err != nil {
				return err
			}
			if col.visible != nil && !col.visible(rq, lk, m) {
				return col.missing(lq.marker)
			}
			it := lq.item(col.render(rq, m))
			marker = &it
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if len(lq.sortKeys) > 0 {
		slices.SortStableFunc(items, lq.compare)
	}
	var links []map[string]string
	if lq.paginated {
		items, links = lq.paginate(rq.http, items, marker)
	}
	size := 64
	for _, it := range items {
		size += len(it.m) * 8
		for _, x := range it.m {
			size += len(x.key) + len(x.val)
		}
	}
	buf := make([]byte, 0, size)
	buf = append(buf, `{"`...)
	buf = append(buf, col.plural...)
	buf = append(buf, `":[`...)
	for i, it := range items {
		if i > 0 {
			buf = append(buf, ',')
		}
		m := it.m
		if len(lq.fields) > 0 {
			m = m.pick(lq.fields)
		}
		buf = m.appendJSON(buf)
	}
	buf = append(buf, ']')
	if links != nil {
		lb, err := json.Marshal(links)
		if err != nil {
			return 0, nil, err
		}
		buf = append(buf, `,"`...)
		buf = append(buf, col.plural...)
		buf = append(buf, `_links":`...)
		buf = append(buf, lb...)
	}
	buf = append(buf, '}')
	return http.StatusOK, preEncoded(buf), nil
}

// indexed picks a filter that a store index answers.
func (lq *listQuery) indexed(col *collection) (string, []string) {
	for _, k := range col.indexes {
		if vs, ok := lq.filters[k]; ok {
			return k, vs
		}
	}
	return "", nil
}

// paginate applies marker, page_reverse and limit to the sorted items and builds the
// next/previous links as Neutron does.
func (lq *listQuery) paginate(r *http.Request, items []listItem, marker *listItem) ([]listItem, []map[string]string) {
	if marker != nil {
		if lq.reverse {
			i, _ := slices.BinarySearchFunc(items, *marker, lq.compare)
			items = items[:i]
		} else {
			i, found := slices.BinarySearchFunc(items, *marker, lq.compare)
			if found {
				i++
			}
			items = items[i:]
		}
	}
	full := false
	if lq.limit > 0 && len(items) >= lq.limit {
		full = true
		if lq.reverse {
			items = items[len(items)-lq.limit:]
		} else {
			items = items[:lq.limit]
		}
	}
	links := []map[string]string{}
	if len(items) == 0 {
		return items, links
	}
	first, last := items[0].id, items[len(items)-1].id
	next := full
	prev := lq.marker != ""
	if lq.reverse {
		next, prev = lq.marker != "", full
	}
	if next {
		links = append(links, map[string]string{"rel": "next", "href": pageLink(r, lq.limit, last, false)})
	}
	if prev {
		links = append(links, map[string]string{"rel": "previous", "href": pageLink(r, lq.limit, first, true)})
	}
	return items, links
}

func pageLink(r *http.Request, limit int, marker string, reverse bool) string {
	q := r.URL.Query()
	q.Del("marker")
	q.Del("page_reverse")
	q.Del("limit")
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	q.Set("marker", marker)
	if reverse {
		q.Set("page_reverse", "True")
	}
	return baseURL(r) + r.URL.Path + "?" + q.Encode()
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) show(rq *request, col *collection, id string) (int, any, error) {
	if err := s.beforeList(rq, col); err != nil {
		return 0, nil, err
	}
	var m rawObj
	err := rq.view(func(tx ReadTx) error {
		v, err := tx.Get(col.kind, id)
		if errors.Is(err, ErrNotFound) {
			return col.missing(id)
		}
		if err != nil {
			return err
		}
		if m, err = parseObj(bytes.Clone(v)); err != nil {
			return fmt.Errorf("%s %s: %w", col.kind, id, err)
		}
		if col.visible != nil && !col.visible(rq, rq.lookup(tx), m) {
			return col.missing(id)
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	m = col.render(rq, m)
	if f := rq.http.URL.Query()["fields"]; len(f) > 0 {
		m = m.pick(splitTags(f))
	}
	return http.StatusOK, map[string]any{col.member: m}, nil
}

func (s *Server) create(rq *request, col *collection) (int, any, error) {
	if col.create == nil {
		return 0, nil, methodNotAllowed(rq.http)
	}
	if rq.c.readOnly {
		return 0, nil, forbidden("create_" + col.member)
	}
	body, err := readBody(rq.http)
	if err != nil {
		return 0, nil, err
	}
	var raws []json.RawMessage
	bulk := false
	if raw, ok := body[col.member]; ok {
		raws = []json.RawMessage{raw}
	} else if raw, ok := body[col.plural]; ok && col.plural != col.member {
		bulk = true
		if err := json.Unmarshal(raw, &raws); err != nil || len(raws) == 0 {
			return 0, nil, badRequest("Invalid input: '%s' must be a non-empty list of objects", col.plural)
		}
	} else {
		return 0, nil, badRequest("Unable to find '%s' in request body", col.member)
	}
	list := make([]*attrs, len(raws))
	for i, raw := range raws {
		if list[i], err = newAttrs(raw, col.member, http.MethodPost); err != nil {
			return 0, nil, err
		}
	}
	var objs []any
	err = rq.update(func(tx Tx) error {
		objs = objs[:0]
		for _, a := range list {
			o, err := col.create(rq, tx, a)
			if err != nil {
				return err
			}
			objs = append(objs, o)
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	out := make([]any, len(objs))
	for i, o := range objs {
		if out[i], err = col.renderObj(rq, o); err != nil {
			return 0, nil, err
		}
	}
	if bulk {
		return http.StatusCreated, map[string]any{col.plural: out}, nil
	}
	return http.StatusCreated, map[string]any{col.member: out[0]}, nil
}

func (s *Server) update(rq *request, col *collection, id string) (int, any, error) {
	if col.update == nil {
		return 0, nil, methodNotAllowed(rq.http)
	}
	body, err := readBody(rq.http)
	if err != nil {
		return 0, nil, err
	}
	raw, ok := body[col.member]
	if !ok {
		return 0, nil, badRequest("Unable to find '%s' in request body", col.member)
	}
	a, err := newAttrs(raw, col.member, http.MethodPut)
	if err != nil {
		return 0, nil, err
	}
	want, err := ifMatch(rq.http)
	if err != nil {
		return 0, nil, err
	}
	var obj any
	err = rq.update(func(tx Tx) error {
		if want >= 0 {
			if err := checkRevision(rq, tx, col, id, want); err != nil {
				return err
			}
		}
		var err error
		obj, err = col.update(rq, tx, id, a)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	m, err := col.renderObj(rq, obj)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{col.member: m}, nil
}

func (s *Server) delete(rq *request, col *collection, id string) (int, any, error) {
	if col.del == nil {
		return 0, nil, methodNotAllowed(rq.http)
	}
	err := rq.update(func(tx Tx) error { return col.del(rq, tx, id) })
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (s *Server) action(rq *request, col *collection, id string, act func(*request, Tx, string, *attrs) (any, error)) (int, any, error) {
	body, err := readBody(rq.http)
	if err != nil {
		return 0, nil, err
	}
	raw, _ := json.Marshal(body)
	a, err := newAttrs(raw, "body", http.MethodPut)
	if err != nil {
		return 0, nil, err
	}
	var out any
	err = rq.update(func(tx Tx) error {
		var err error
		out, err = act(rq, tx, id, a)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

// ifMatch parses Neutron's "If-Match: revision_number=N" (standard-attr-revisions);
// -1 when absent.
func ifMatch(r *http.Request) (int, error) {
	h := r.Header.Get("If-Match")
	if h == "" {
		return -1, nil
	}
	v, ok := strings.CutPrefix(h, "revision_number=")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 0 {
		return 0, badRequest("If-Match header %q: want revision_number=N", shortStr(h))
	}
	return n, nil
}

// checkRevision fails with 412 when the stored object's revision is not want. A
// missing object is left to the update itself (404).
func checkRevision(rq *request, tx ReadTx, col *collection, id string, want int) error {
	v, err := tx.Get(col.kind, id)
	if err != nil {
		return nil
	}
	m, err := parseObj(v)
	if err != nil {
		return err
	}
	if col.visible != nil && !col.visible(rq, rq.lookup(tx), m) {
		return nil // the update answers 404 without telling the revision
	}
	if rev, _ := m.attr("revision_number").(float64); int(rev) != want {
		return newErr(http.StatusPreconditionFailed, "RevisionNumberConstraintFailed", "Constrained to %d, but current revision is %d", want, int(rev))
	}
	return nil
}
