package controlplane

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// extension is one entry of GET /v2.0/extensions.
type extension struct {
	Alias       string   `json:"alias"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Updated     string   `json:"updated"`
	Links       []string `json:"links"`
}

// implementedExtensions lists what this server implements, with Neutron's aliases.
func implementedExtensions() []extension {
	e := func(alias, name, desc string) extension {
		return extension{Alias: alias, Name: name, Description: desc, Updated: "2024-01-01T00:00:00-00:00", Links: []string{}}
	}
	return []extension{
		e("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
		e("external-net", "Neutron external network", "Adds external network attribute to network resource."),
		e("network-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
		e("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway."),
		e("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway"),
		e("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
		e("security-group", "security-group", "The security groups extension."),
		e("port-security", "Port Security", "Provides port security"),
		e("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
		e("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
		e("qos", "Quality of Service", "The Quality of Service extension."),
		e("qos-bw-limit-direction", "Direction for QoS bandwidth limit rule", "Allow to configure QoS bandwidth limit rule with specific direction: ingress or egress"),
		e("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
		e("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
		e("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
		e("standard-attr-tag", "Tag support for resources with standard attribute: subnet, trunk, network_segment_range, router, network, policy, subnetpool, port, security_group, floatingip", "Enables to set tag on resources with standard attribute."),
		e("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
		e("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
		e("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
		e("vhost-user", "offlane vhost-user vnic type", "binding:vnic_type accepts vhost-user (offlane extension): the agent plugs a DPDK vhost-user port."),
	}
}

func (s *Server) extensions(rest []string) (int, any, error) {
	exts := implementedExtensions()
	if len(rest) == 0 {
		return http.StatusOK, map[string]any{"extensions": exts}, nil
	}
	if len(rest) == 1 {
		for _, e := range exts {
			if e.Alias == rest[0] {
				return http.StatusOK, map[string]any{"extension": e}, nil
			}
		}
	}
	return 0, nil, notFound("HTTPNotFound", "Extension with alias %s does not exist", strings.Join(rest, "/"))
}

func (s *Server) versions(r *http.Request) any {
	return map[string]any{"versions": []any{map[string]any{
		"id": "v2.0", "status": "CURRENT",
		"links": []any{map[string]string{"href": baseURL(r) + "/v2.0/", "rel": "self"}},
	}}}
}

func (s *Server) resourcesIndex(r *http.Request) any {
	names := make([]string, 0, len(s.collections))
	for n := range s.collections {
		names = append(names, n)
	}
	slices.Sort(names)
	res := []any{}
	for _, n := range names {
		c := s.collections[n]
		res = append(res, map[string]any{
			"name": c.member, "collection": c.plural,
			"links": []any{map[string]string{"href": baseURL(r) + "/v2.0/" + c.name, "rel": "self"}},
		})
	}
	return map[string]any{"resources": res}
}

// tags serves /{collection}/{id}/tags[/{tag}] (standard-attr-tag).
func (s *Server) tags(rq *request, col *collection, id string, rest []string) (int, any, error) {
	if col.newObj == nil || col.newObj().tagList() == nil {
		return 0, nil, notFound("HTTPNotFound", "The resource could not be found.")
	}
	tag := ""
	if len(rest) == 1 {
		tag = rest[0]
		if tag == "" || len(tag) > 255 || strings.Contains(tag, ",") {
			return 0, nil, badRequest("Invalid input for tag. Reason: '%s' is not a valid tag (1-255 characters, no comma).", shortStr(tag))
		}
	}
	load := func(tx ReadTx) (storable, error) {
		v, err := tx.Get(col.kind, id)
		if errors.Is(err, ErrNotFound) {
			return nil, col.missing(id)
		} else if err != nil {
			return nil, err
		}
		m, err := parseObj(v)
		if err != nil {
			return nil, err
		}
		if col.visible != nil && !col.visible(rq, rq.lookup(tx), m) {
			return nil, col.missing(id)
		}
		o := col.newObj()
		if err := json.Unmarshal(v, o); err != nil {
			return nil, err
		}
		return o, nil
	}
	r := rq.http
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		var tags []string
		err := rq.view(func(tx ReadTx) error {
			o, err := load(tx)
			if err == nil {
				tags = *o.tagList()
			}
			return err
		})
		if err != nil {
			return 0, nil, err
		}
		if tag == "" {
			return http.StatusOK, map[string]any{"tags": nonNil(tags)}, nil
		}
		if !slices.Contains(tags, tag) {
			return 0, nil, notFound("TagNotFound", "Tag %s could not be found for %s %s.", tag, col.member, id)
		}
		return http.StatusNoContent, nil, nil
	}
	var newTags []string
	if r.Method == http.MethodPut && tag == "" {
		body, err := readBody(r)
		if err != nil {
			return 0, nil, err
		}
		raw, _ := json.Marshal(body)
		a, err := newAttrs(raw, "body", http.MethodPut)
		if err != nil {
			return 0, nil, err
		}
		if _, err := a.strList("tags", &newTags, 50); err != nil {
			return 0, nil, err
		}
		if err := a.done(); err != nil {
			return 0, nil, err
		}
		for _, t := range newTags {
			if t == "" || len(t) > 255 || strings.Contains(t, ",") {
				return 0, nil, badRequest("Invalid input for tags. Reason: '%s' is not a valid tag (1-255 characters, no comma).", shortStr(t))
			}
		}
	} else if r.Method != http.MethodPut && r.Method != http.MethodDelete {
		return 0, nil, methodNotAllowed(r)
	}
	var result []string
	err := rq.update(func(tx Tx) error {
		o, err := load(tx)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(o)
		m, _ := parseObj(b)
		if err := rq.mustOwn(str(m, "project_id"), "update_"+col.member+":tags"); err != nil {
			return err
		}
		tl := o.tagList()
		switch {
		case r.Method == http.MethodPut && tag == "":
			*tl = dedupe(newTags)
		case r.Method == http.MethodPut:
			if slices.Contains(*tl, tag) {
				result = *tl
				return nil
			}
			*tl = append(*tl, tag)
		case tag == "":
			*tl = []string{}
		default:
			i := slices.Index(*tl, tag)
			if i < 0 {
				return notFound("TagNotFound", "Tag %s could not be found for %s %s.", tag, col.member, id)
			}
			*tl = slices.Delete(*tl, i, i+1)
		}
		if len(*tl) > 50 {
			return badRequest("Invalid input for tags. Reason: at most 50 tags per resource.")
		}
		o.touch(rq.now)
		result = *tl
		return save(tx, col.kind, id, o)
	})
	if err != nil {
		return 0, nil, err
	}
	switch {
	case r.Method == http.MethodPut && tag == "":
		return http.StatusOK, map[string]any{"tags": nonNil(result)}, nil
	case r.Method == http.MethodPut:
		return http.StatusCreated, nil, nil
	}
	return http.StatusNoContent, nil, nil
}

func dedupe(l []string) []string {
	out := []string{}
	for _, s := range l {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func nonNil[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}
