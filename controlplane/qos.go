package controlplane

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
)

func (s *Server) qosPolicyCollection() *collection {
	return &collection{
		name: "qos/policies", member: "policy", plural: "policies", kind: KindQoSPolicy,
		notFound: "QosPolicyNotFound", label: "QoS policy", attrs: attrNames(QoSPolicy{}),
		indexes: []string{"project_id"},
		newObj:  func() storable { return &QoSPolicy{} },
		visible: func(rq *request, _ *lookup, m rawObj) bool {
			return rq.c.owns(str(m, "project_id")) || boolean(m, "shared")
		},
		create: s.createQoSPolicy,
		update: s.updateQoSPolicy,
		del:    s.deleteQoSPolicy,
	}
}

func qosNotFound(id string) *apiError {
	return notFound("QosPolicyNotFound", "QoS policy %s could not be found.", id)
}

func (rq *request) loadQoSPolicy(tx ReadTx, id string) (*QoSPolicy, error) {
	var q QoSPolicy
	if err := getObj(tx, KindQoSPolicy, id, &q, qosNotFound(id)); err != nil {
		return nil, err
	}
	if !rq.c.owns(q.ProjectID) && !q.Shared {
		return nil, qosNotFound(id)
	}
	return &q, nil
}

// usableQoSPolicy checks that the caller may attach a policy: its own or a shared one.
func (rq *request) usableQoSPolicy(tx ReadTx, id string) (*QoSPolicy, error) {
	return rq.loadQoSPolicy(tx, id)
}

// QoS policies and rules are admin-only to create and change (Neutron's default policy).
func (rq *request) qosAdmin(rule string) error {
	if !rq.c.admin {
		return forbidden(rule)
	}
	return nil
}

func (s *Server) createQoSPolicy(rq *request, tx Tx, a *attrs) (any, error) {
	if err := rq.qosAdmin("create_policy"); err != nil {
		return nil, err
	}
	q := &QoSPolicy{ID: newID(), Rules: []QoSRule{}, Tags: []string{}, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1}
	if err := a.forbid("id", "rules", "revision_number", "created_at", "updated_at"); err != nil {
		return nil, err
	}
	project, err := rq.project(a)
	if err != nil {
		return nil, err
	}
	q.ProjectID, q.TenantID = project, project
	if err := qosPolicyAttrs(a, q); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if err := checkDefaultPolicy(tx, q); err != nil {
		return nil, err
	}
	return q, save(tx, KindQoSPolicy, q.ID, q)
}

func qosPolicyAttrs(a *attrs, q *QoSPolicy) error {
	if _, err := a.str("name", &q.Name, maxNameLen); err != nil {
		return err
	}
	if _, err := a.str("description", &q.Description, maxNameLen); err != nil {
		return err
	}
	if _, err := a.boolean("shared", &q.Shared); err != nil {
		return err
	}
	_, err := a.boolean("is_default", &q.IsDefault)
	return err
}

// checkDefaultPolicy allows one default policy per project.
func checkDefaultPolicy(tx ReadTx, q *QoSPolicy) error {
	if !q.IsDefault {
		return nil
	}
	return tx.ListBy(KindQoSPolicy, "project_id", q.ProjectID, func(id string, v []byte) error {
		var o QoSPolicy
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		if o.IsDefault && o.ID != q.ID {
			return conflict("QoSPolicyDefaultAlreadyExists", "A default QoS policy exists for project %s.", q.ProjectID)
		}
		return nil
	})
}

func (s *Server) updateQoSPolicy(rq *request, tx Tx, id string, a *attrs) (any, error) {
	q, err := rq.loadQoSPolicy(tx, id)
	if err != nil {
		return nil, err
	}
	if err := rq.qosAdmin("update_policy"); err != nil {
		return nil, err
	}
	if err := a.forbid("id", "rules", "project_id", "tenant_id", "revision_number", "created_at", "updated_at"); err != nil {
		return nil, err
	}
	if err := qosPolicyAttrs(a, q); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if err := checkDefaultPolicy(tx, q); err != nil {
		return nil, err
	}
	q.touch(rq.now)
	return q, save(tx, KindQoSPolicy, q.ID, q)
}

func (s *Server) deleteQoSPolicy(rq *request, tx Tx, id string) error {
	if _, err := rq.loadQoSPolicy(tx, id); err != nil {
		return err
	}
	if err := rq.qosAdmin("delete_policy"); err != nil {
		return err
	}
	for _, kind := range []string{KindPort, KindNetwork} {
		var user string
		err := tx.ListBy(kind, "qos_policy_id", id, func(oid string, _ []byte) error {
			user = oid
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
		if user != "" {
			return conflict("QosPolicyInUse", "QoS Policy %s is used by %s %s.", id, kind[:len(kind)-1], user)
		}
	}
	return tx.Delete(KindQoSPolicy, id)
}

var errStop = errors.New("stop")

// qosRuleKind describes one rule collection under /qos/policies/{id}/.
type qosRuleKind struct {
	typ, member string
}

var qosRuleKinds = map[string]qosRuleKind{
	"bandwidth_limit_rules":   {QoSBandwidthLimit, "bandwidth_limit_rule"},
	"dscp_marking_rules":      {QoSDSCPMarking, "dscp_marking_rule"},
	"minimum_bandwidth_rules": {QoSMinimumBandwidth, "minimum_bandwidth_rule"},
}

// validDSCPMarks are the DSCP values Neutron accepts.
var validDSCPMarks = []int{0, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 46, 48, 56}

func (s *Server) qosRuleTypes(rest []string) (int, any, error) {
	types := []string{QoSBandwidthLimit, QoSDSCPMarking, QoSMinimumBandwidth}
	if len(rest) == 0 {
		out := []any{}
		for _, t := range types {
			out = append(out, map[string]string{"type": t})
		}
		return http.StatusOK, map[string]any{"rule_types": out}, nil
	}
	if len(rest) == 1 && slices.Contains(types, rest[0]) {
		params := map[string][]any{
			QoSBandwidthLimit:   {param("max_kbps", "range", []int{0, 2147483647}), param("max_burst_kbps", "range", []int{0, 2147483647}), param("direction", "choices", []string{"egress", "ingress"})},
			QoSDSCPMarking:      {param("dscp_mark", "choices", validDSCPMarks)},
			QoSMinimumBandwidth: {param("min_kbps", "range", []int{0, 2147483647}), param("direction", "choices", []string{"egress", "ingress"})},
		}[rest[0]]
		return http.StatusOK, map[string]any{"rule_type": map[string]any{
			"type": rest[0], "drivers": []any{map[string]any{"name": "offlane", "supported_parameters": params}},
		}}, nil
	}
	return 0, nil, notFound("QosRuleTypeNotFound", "QoS rule type %v could not be found.", rest)
}

func param(name, typ string, values any) map[string]any {
	return map[string]any{"parameter_name": name, "parameter_type": typ, "parameter_values": values}
}

// qosRules serves /qos/policies/{pid}/{kind}_rules[/{rid}].
func (s *Server) qosRules(rq *request, pid, coll string, rest []string) (int, any, error) {
	rk, ok := qosRuleKinds[coll]
	if !ok || len(rest) > 1 {
		return 0, nil, notFound("HTTPNotFound", "The resource could not be found.")
	}
	r := rq.http
	ruleNF := func(id string) *apiError {
		return notFound("QoSRuleNotFound", "QoS rule %s for policy %s could not be found.", id, pid)
	}
	view := func(rule QoSRule) map[string]any {
		b, _ := json.Marshal(rule)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		delete(m, "type")
		return m
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		var q *QoSPolicy
		err := rq.view(func(tx ReadTx) error {
			var err error
			q, err = rq.loadQoSPolicy(tx, pid)
			return err
		})
		if err != nil {
			return 0, nil, err
		}
		var out []map[string]any
		for _, rule := range q.Rules {
			if rule.Type != rk.typ {
				continue
			}
			if len(rest) == 1 && rule.ID == rest[0] {
				return http.StatusOK, map[string]any{rk.member: view(rule)}, nil
			}
			out = append(out, view(rule))
		}
		if len(rest) == 1 {
			return 0, nil, ruleNF(rest[0])
		}
		return http.StatusOK, map[string]any{coll: nonNil(out)}, nil
	}
	switch {
	case r.Method == http.MethodPost && len(rest) == 0, r.Method == http.MethodPut && len(rest) == 1, r.Method == http.MethodDelete && len(rest) == 1:
	default:
		return 0, nil, methodNotAllowed(r)
	}
	var a *attrs
	if r.Method != http.MethodDelete {
		body, err := readBody(r)
		if err != nil {
			return 0, nil, err
		}
		raw, ok := body[rk.member]
		if !ok {
			return 0, nil, badRequest("Unable to find '%s' in request body", rk.member)
		}
		if a, err = newAttrs(raw, rk.member, r.Method); err != nil {
			return 0, nil, err
		}
	}
	var result QoSRule
	err := rq.update(func(tx Tx) error {
		q, err := rq.loadQoSPolicy(tx, pid)
		if err != nil {
			return err
		}
		action := map[string]string{http.MethodPost: "create_", http.MethodPut: "update_", http.MethodDelete: "delete_"}[r.Method]
		if err := rq.qosAdmin(action + "policy_" + rk.member); err != nil {
			return err
		}
		idx := -1
		if len(rest) == 1 {
			idx = slices.IndexFunc(q.Rules, func(x QoSRule) bool { return x.ID == rest[0] && x.Type == rk.typ })
			if idx < 0 {
				return ruleNF(rest[0])
			}
		}
		if r.Method == http.MethodDelete {
			q.Rules = slices.Delete(q.Rules, idx, idx+1)
		} else {
			rule := QoSRule{ID: newID(), Type: rk.typ, QoSPolicyID: q.ID}
			if idx >= 0 {
				rule = q.Rules[idx]
			}
			if err := a.forbid("id", "qos_policy_id", "type"); err != nil {
				return err
			}
			if err := qosRuleAttrs(a, &rule, idx < 0); err != nil {
				return err
			}
			if err := a.done(); err != nil {
				return err
			}
			for i, o := range q.Rules {
				if i != idx && o.Type == rule.Type && (o.Direction == rule.Direction || rule.Type == QoSDSCPMarking) {
					return conflict("QoSRulesConflict", "Rule %s conflicts with rule %s which already exists in QoS Policy %s.", rule.Type, o.ID, q.ID)
				}
			}
			if idx >= 0 {
				q.Rules[idx] = rule
			} else {
				q.Rules = append(q.Rules, rule)
			}
			result = rule
		}
		q.touch(rq.now)
		return save(tx, KindQoSPolicy, q.ID, q)
	})
	if err != nil {
		return 0, nil, err
	}
	switch r.Method {
	case http.MethodPost:
		return http.StatusCreated, map[string]any{rk.member: view(result)}, nil
	case http.MethodPut:
		return http.StatusOK, map[string]any{rk.member: view(result)}, nil
	}
	return http.StatusNoContent, nil, nil
}

func qosRuleAttrs(a *attrs, rule *QoSRule, create bool) error {
	const maxKbps = 2147483647
	direction := func() error {
		if rule.Direction == "" {
			rule.Direction = "egress"
		}
		if _, err := a.str("direction", &rule.Direction, 16); err != nil {
			return err
		}
		if rule.Direction != "egress" && rule.Direction != "ingress" {
			return invalidAttr("direction", "'%s' is not in ['egress', 'ingress']", shortStr(rule.Direction))
		}
		return nil
	}
	required := func(name string, dst **int, max int) error {
		v := 0
		if *dst != nil {
			v = **dst
		}
		has, err := a.integer(name, &v, 0, max)
		if err != nil {
			return err
		}
		if !has && create {
			return badRequest("Failed to parse request. Required attribute '%s' not specified", name)
		}
		*dst = &v
		return nil
	}
	switch rule.Type {
	case QoSBandwidthLimit:
		if err := required("max_kbps", &rule.MaxKbps, maxKbps); err != nil {
			return err
		}
		burst := 0
		if rule.MaxBurstKbps != nil {
			burst = *rule.MaxBurstKbps
		}
		if _, err := a.integer("max_burst_kbps", &burst, 0, maxKbps); err != nil {
			return err
		}
		rule.MaxBurstKbps = &burst
		return direction()
	case QoSMinimumBandwidth:
		if err := required("min_kbps", &rule.MinKbps, maxKbps); err != nil {
			return err
		}
		return direction()
	case QoSDSCPMarking:
		if err := required("dscp_mark", &rule.DSCPMark, 63); err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.Type == "HTTPBadRequest" && a.has("dscp_mark") {
				return invalidAttr("dscp_mark", "%s is not in valid_values %v", shortRaw(a.m["dscp_mark"]), validDSCPMarks)
			}
			return err
		}
		if !slices.Contains(validDSCPMarks, *rule.DSCPMark) {
			return invalidAttr("dscp_mark", "%d is not in valid_values %v", *rule.DSCPMark, validDSCPMarks)
		}
	}
	return nil
}
