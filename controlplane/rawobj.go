package controlplane

import (
	"bytes"
	"encoding/json"
	"errors"
)

// rawObj is a stored object with its top-level members still encoded, in stored order.
// Listing thousands of objects decodes only the members a visibility check, filter or
// sort needs, and writes the rest back byte for byte.
type rawObj []member

type member struct {
	key []byte // as encoded, without quotes (the model's attribute names need no escapes)
	val []byte
}

var errBadObject = errors.New("stored value is not a JSON object")

// parseObj splits a JSON object written by encoding/json into its members. The bytes are
// referenced, not copied.
func parseObj(b []byte) (rawObj, error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errBadObject
	}
	out := make(rawObj, 0, 28)
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return out, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, errBadObject
		}
		end, ok := skipString(b, i)
		if !ok {
			return nil, errBadObject
		}
		key := b[i+1 : end-1]
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, errBadObject
		}
		i = skipWS(b, i+1)
		vend, ok := skipValue(b, i)
		if !ok {
			return nil, errBadObject
		}
		out = append(out, member{key: key, val: b[i:vend]})
		i = skipWS(b, vend)
		if i >= len(b) {
			return nil, errBadObject
		}
		if b[i] == '}' {
			return out, nil
		}
		if b[i] != ',' {
			return nil, errBadObject
		}
		i = skipWS(b, i+1)
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := skipString(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' {
		j++
	}
	return j, j > i
}

// get returns a member's encoded value (nil when absent).
func (m rawObj) get(k string) []byte {
	for _, x := range m {
		if string(x.key) == k {
			return x.val
		}
	}
	return nil
}

// without returns m minus the named members (m itself when none is present).
func (m rawObj) without(keys []string) rawObj {
	out := m
	for _, k := range keys {
		for i, x := range out {
			if string(x.key) == k {
				if &out[0] == &m[0] {
					out = append(rawObj(nil), m...)
				}
				out = append(out[:i], out[i+1:]...)
				break
			}
		}
	}
	return out
}

// pick returns the named members, in stored order.
func (m rawObj) pick(keys []string) rawObj {
	out := rawObj{}
	for _, x := range m {
		for _, k := range keys {
			if string(x.key) == k {
				out = append(out, x)
				break
			}
		}
	}
	return out
}

// appendJSON writes the object.
func (m rawObj) appendJSON(buf []byte) []byte {
	buf = append(buf, '{')
	for i, x := range m {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		buf = append(buf, x.key...)
		buf = append(buf, '"', ':')
		buf = append(buf, x.val...)
	}
	return append(buf, '}')
}

// MarshalJSON lets a rawObj sit inside other answers.
func (m rawObj) MarshalJSON() ([]byte, error) { return m.appendJSON(nil), nil }

func str(m rawObj, k string) string {
	v := m.get(k)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	var s string
	_ = json.Unmarshal(v, &s)
	return s
}

func boolean(m rawObj, k string) bool { return string(m.get(k)) == "true" }

// attr decodes one member (numbers as float64; nil when absent or null).
func (m rawObj) attr(k string) any {
	v := m.get(k)
	if v == nil {
		return nil
	}
	var x any
	_ = json.Unmarshal(v, &x)
	return x
}

// preEncoded is an answer body already in JSON.
type preEncoded []byte
