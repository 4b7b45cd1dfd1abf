package controlplane

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// The node agents' API (admin only, as Neutron's agent RPC is): a remote `offlane agent`
// reads the desired state, follows its changes and writes back bindings and heartbeats.
//
//	GET /v2.0/offlane/state            the State at one revision
//	GET /v2.0/offlane/watch?from=N     newline-delimited WireEvents after N, one flush each
//	PUT /v2.0/offlane/bindings/{port}  a WireBinding → SetPortBinding
//	POST /v2.0/offlane/heartbeat       an Agent → Heartbeat
//	GET /v2.0/agents[/{id}]            the agents registry in Neutron's shape

// WireEvent is one watch event on the wire. Head is the store's revision when it was
// sent (for the agent's watch-lag metric). A last line with Error set ends a stream that
// failed; Compacted says the agent must resync fully.
type WireEvent struct {
	Revision  int64           `json:"revision,omitempty"`
	Type      EventType       `json:"type,omitempty"`
	Kind      string          `json:"kind,omitempty"`
	ID        string          `json:"id,omitempty"`
	Value     json.RawMessage `json:"value,omitempty"`
	Head      int64           `json:"head,omitempty"`
	Error     string          `json:"error,omitempty"`
	Compacted bool            `json:"compacted,omitempty"`
}

// WireBinding is the body of PUT /v2.0/offlane/bindings/{port_id}.
type WireBinding struct {
	Host       string         `json:"host"`
	Status     string         `json:"status"`
	VIFType    string         `json:"vif_type"`
	VIFDetails map[string]any `json:"vif_details"`
}

// AgentDownTime is how old a heartbeat may be for GET /v2.0/agents to call the agent
// alive (Neutron's agent_down_time default).
const AgentDownTime = 75 * time.Second

// serveAgentRPC answers the agents' paths (segs after v2.0); false when the path is not
// one of them.
func (s *Server) serveAgentRPC(w http.ResponseWriter, r *http.Request, c caller, segs []string) bool {
	if len(segs) == 0 || (segs[0] != "offlane" && segs[0] != "agents") {
		return false
	}
	err := s.agentRPC(w, r, c, segs)
	if err != nil {
		s.writeError(w, r, err)
	}
	return true
}

func (s *Server) agentRPC(w http.ResponseWriter, r *http.Request, c caller, segs []string) error {
	method := func(m string) error {
		if r.Method != m && (m != http.MethodGet || r.Method != http.MethodHead) {
			return methodNotAllowed(r)
		}
		return nil
	}
	if segs[0] == "agents" {
		if err := method(http.MethodGet); err != nil {
			return err
		}
		if !c.admin {
			return forbidden("get_agent")
		}
		return s.getAgents(w, r, segs[1:])
	}
	if len(segs) < 2 {
		return notFound("HTTPNotFound", "The resource could not be found.")
	}
	if !c.admin {
		return forbidden("offlane_agent_rpc")
	}
	switch {
	case segs[1] == "state" && len(segs) == 2:
		if err := method(http.MethodGet); err != nil {
			return err
		}
		st, err := LoadState(r.Context(), s.store)
		if err != nil {
			return err
		}
		s.writeJSON(w, http.StatusOK, st)
		return nil
	case segs[1] == "watch" && len(segs) == 2:
		if err := method(http.MethodGet); err != nil {
			return err
		}
		return s.watchHTTP(w, r)
	case segs[1] == "bindings" && len(segs) == 3:
		if err := method(http.MethodPut); err != nil {
			return err
		}
		return s.putBinding(w, r, segs[2])
	case segs[1] == "heartbeat" && len(segs) == 2:
		if err := method(http.MethodPost); err != nil {
			return err
		}
		return s.postHeartbeat(w, r)
	}
	return notFound("HTTPNotFound", "The resource could not be found.")
}

func decodeBody(r *http.Request, what string, dst any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return badRequest("%s: the body is not valid JSON for it: %v", what, err)
	}
	return nil
}

func (s *Server) watchHTTP(w http.ResponseWriter, r *http.Request) error {
	raw := r.URL.Query().Get("from")
	from, err := strconv.ParseInt(raw, 10, 64)
	if raw == "" || err != nil || from < 0 {
		return invalidAttr("from", "%q is not a revision: want ?from=N with N >= 0 (the State's Revision)", raw)
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		return errors.New("watch: the response writer cannot flush")
	}
	wt, err := s.store.Watch(r.Context(), from)
	if errors.Is(err, ErrCompacted) {
		return newErr(http.StatusGone, "RevisionCompacted", "Revision %d is compacted: load /v2.0/offlane/state again and watch from its Revision.", from)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	enc := json.NewEncoder(w)
	for ev := range wt.C {
		we := WireEvent{Revision: ev.Revision, Type: ev.Type, Kind: ev.Kind, ID: ev.ID, Head: s.store.Revision()}
		if json.Valid(ev.Value) {
			we.Value = ev.Value
		}
		if err := enc.Encode(we); err != nil {
			return nil // the client went away
		}
		fl.Flush()
	}
	if err := wt.Err(); err != nil && r.Context().Err() == nil {
		_ = enc.Encode(WireEvent{Error: err.Error(), Compacted: errors.Is(err, ErrCompacted)})
		fl.Flush()
	}
	return nil
}

var portStatuses = map[string]bool{PortStatusActive: true, PortStatusDown: true, PortStatusBuild: true, PortStatusError: true}

func (s *Server) putBinding(w http.ResponseWriter, r *http.Request, id string) error {
	if !idLikeRPC(id) {
		return invalidAttr("port_id", "%q is not a port id", id)
	}
	var b WireBinding
	if err := decodeBody(r, "binding", &b); err != nil {
		return err
	}
	switch {
	case b.Host == "":
		return invalidAttr("host", "empty: give the agent's host (the port's binding:host_id)")
	case !portStatuses[b.Status]:
		return invalidAttr("status", "%q: want ACTIVE, DOWN, BUILD or ERROR", b.Status)
	case b.VIFType == "":
		return invalidAttr("vif_type", "empty: give the binding:vif_type (ovs, vhostuser, hw_veb, binding_failed, unbound)")
	}
	wrote, err := SetPortBinding(r.Context(), s.store, b.Host, id, PortBinding{Status: b.Status, VIFType: b.VIFType, VIFDetails: b.VIFDetails})
	if errors.Is(err, ErrNotFound) {
		return notFound("PortNotFound", "Port %s could not be found.", id)
	}
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, map[string]bool{"written": wrote})
	return nil
}

func (s *Server) postHeartbeat(w http.ResponseWriter, r *http.Request) error {
	var ag Agent
	if err := decodeBody(r, "agent", &ag); err != nil {
		return err
	}
	switch {
	case ag.Host == "":
		return invalidAttr("host", "empty: give the agent's host")
	case ag.AgentType == "":
		return invalidAttr("agent_type", "empty: give the agent type, e.g. %q", AgentTypeOVS)
	case ag.ID != "" && ag.ID != AgentID(ag.Host):
		return invalidAttr("id", "%q does not match host %q: leave it empty or give %q", ag.ID, ag.Host, AgentID(ag.Host))
	}
	if err := Heartbeat(r.Context(), s.store, ag, time.Now()); err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, map[string]string{"id": AgentID(ag.Host)})
	return nil
}

func (s *Server) getAgents(w http.ResponseWriter, r *http.Request, segs []string) error {
	st, err := LoadState(r.Context(), s.store)
	if err != nil {
		return err
	}
	now := time.Now()
	for i := range st.Agents {
		st.Agents[i].Alive = AgentAlive(st.Agents[i], now, AgentDownTime)
	}
	sort.Slice(st.Agents, func(i, j int) bool { return st.Agents[i].ID < st.Agents[j].ID })
	switch len(segs) {
	case 0:
		ags := st.Agents
		if ags == nil {
			ags = []Agent{}
		}
		s.writeJSON(w, http.StatusOK, map[string]any{"agents": ags})
		return nil
	case 1:
		for _, ag := range st.Agents {
			if ag.ID == segs[0] {
				s.writeJSON(w, http.StatusOK, map[string]any{"agent": ag})
				return nil
			}
		}
		return notFound("AgentNotFound", "Agent %s could not be found.", segs[0])
	}
	return notFound("HTTPNotFound", "The resource could not be found.")
}

func idLikeRPC(id string) bool {
	if id == "" || len(id) > 255 {
		return false
	}
	for _, c := range id {
		switch {
		case c == '-', c == '_', c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		default:
			return false
		}
	}
	return true
}
