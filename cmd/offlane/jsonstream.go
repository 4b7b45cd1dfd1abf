package main

import (
	"bufio"
	"encoding"
	"encoding/json"
	"io"
	"reflect"
	"slices"
	"strings"
)

// streamJSON writes v as JSON (compact) with the large maps and slices of its structs
// encoded one element at a time, so that writing a 10,000-port node plan holds one
// element's encoding at a time instead of the whole file's (tens of MB). Values that are
// not structs, or small, go through encoding/json as a whole; map keys come out sorted,
// as encoding/json sorts them, so the output decodes (and reads) like json.Marshal's.
func streamJSON(w io.Writer, v any) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := streamValue(bw, reflect.ValueOf(v)); err != nil {
		return err
	}
	return bw.Flush()
}

// streamMin is the size from which a map or slice is streamed element by element.
const streamMin = 64

func streamValue(w *bufio.Writer, v reflect.Value) error {
	for {
		if marshals(v) {
			return marshalTo(w, v) // the type's own encoding, as encoding/json uses it
		}
		if v.Kind() != reflect.Pointer && v.Kind() != reflect.Interface {
			break
		}
		if v.IsNil() {
			_, err := w.WriteString("null")
			return err
		}
		v = v.Elem()
	}
	switch {
	case v.Kind() == reflect.Struct:
		return streamStruct(w, v)
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Len() >= streamMin:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		if err := w.WriteByte('{'); err != nil {
			return err
		}
		for i, k := range keys {
			if i > 0 {
				if err := w.WriteByte(','); err != nil {
					return err
				}
			}
			if err := marshalTo(w, k); err != nil {
				return err
			}
			if err := w.WriteByte(':'); err != nil {
				return err
			}
			if err := streamValue(w, v.MapIndex(k)); err != nil {
				return err
			}
		}
		return w.WriteByte('}')
	case v.Kind() == reflect.Slice && v.Len() >= streamMin && v.Type().Elem().Kind() != reflect.Uint8:
		if err := w.WriteByte('['); err != nil {
			return err
		}
		for i := range v.Len() {
			if i > 0 {
				if err := w.WriteByte(','); err != nil {
					return err
				}
			}
			if err := streamValue(w, v.Index(i)); err != nil {
				return err
			}
		}
		return w.WriteByte(']')
	}
	return marshalTo(w, v)
}

// streamStruct writes a struct's exported fields as encoding/json would (json tags:
// name, "-", omitempty); a struct with embedded fields or other tag options goes
// through encoding/json whole.
func streamStruct(w *bufio.Writer, v reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		_, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous || (opts != "" && opts != "omitempty") {
			return marshalTo(w, v)
		}
	}
	if err := w.WriteByte('{'); err != nil {
		return err
	}
	first := true
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" && opts == "" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fv := v.Field(i)
		if strings.Contains(opts, "omitempty") && isEmptyJSON(fv) {
			continue
		}
		if !first {
			if err := w.WriteByte(','); err != nil {
				return err
			}
		}
		first = false
		if err := marshalTo(w, reflect.ValueOf(name)); err != nil {
			return err
		}
		if err := w.WriteByte(':'); err != nil {
			return err
		}
		if err := streamValue(w, fv); err != nil {
			return err
		}
	}
	return w.WriteByte('}')
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// marshals reports whether encoding/json encodes v with a method of its type
// (MarshalJSON or MarshalText, also on the pointer of an addressable value).
func marshals(v reflect.Value) bool {
	if !v.IsValid() || !v.CanInterface() {
		return false
	}
	t := v.Type()
	if t.Implements(jsonMarshaler) || t.Implements(textMarshaler) {
		return true
	}
	return v.CanAddr() && (reflect.PointerTo(t).Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(textMarshaler))
}

func isEmptyJSON(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
}

func marshalTo(w *bufio.Writer, v reflect.Value) error {
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
