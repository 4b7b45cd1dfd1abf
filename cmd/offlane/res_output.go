package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// tableWidth is the width tables are laid out for: long cells wrap to stay within it.
const tableWidth = 100

// printOne prints one object in the chosen format: a FIELD/VALUE table with every
// attribute (sorted), or the object as JSON/YAML, or bare values.
func (s *session) printOne(k *kind, obj map[string]any) error {
	a := s.api
	keys := sortedKeys(obj)
	if len(a.columns) > 0 {
		for _, c := range a.columns {
			if _, ok := obj[c]; !ok {
				fmt.Fprintf(a.g.stderr, "offlane: warning: the %s has no attribute %q (it has: %s)\n", k.label, c, strings.Join(keys, ", "))
			}
		}
		keys = a.columns
	}
	w := a.g.stdout
	switch a.output {
	case "json", "yaml":
		return writeStructured(w, a.output, project(obj, a.columns))
	case "value":
		for _, key := range keys {
			fmt.Fprintln(w, plainValue(obj[key]))
		}
		return nil
	}
	rows := make([][]string, 0, len(keys))
	for _, key := range keys {
		cell := cellValue
		if f, ok := k.cells[key]; ok {
			cell = f
		}
		rows = append(rows, []string{key, cell(obj[key])})
	}
	return writeTable(w, []string{"FIELD", "VALUE"}, rows, tableWidth)
}

// printList prints a list: the kind's summary columns in a table (or the -c attributes),
// every object whole as JSON/YAML, or one line of values per object.
func (s *session) printList(ctx context.Context, k *kind, objs []map[string]any) error {
	a := s.api
	w := a.g.stdout
	switch a.output {
	case "json", "yaml":
		out := make([]map[string]any, len(objs))
		for i, o := range objs {
			out[i] = project(o, a.columns)
		}
		return writeStructured(w, a.output, out)
	case "value":
		cols := a.columns
		if len(cols) == 0 {
			cols = []string{"id"}
		}
		for _, o := range objs {
			vals := make([]string, len(cols))
			for i, c := range cols {
				vals[i] = plainValue(o[c])
			}
			fmt.Fprintln(w, strings.Join(vals, " "))
		}
		return nil
	}
	if len(a.columns) > 0 {
		headers := make([]string, len(a.columns))
		for i, c := range a.columns {
			headers[i] = strings.ToUpper(c)
		}
		rows := make([][]string, len(objs))
		for i, o := range objs {
			rows[i] = make([]string, len(a.columns))
			for j, c := range a.columns {
				rows[i][j] = cellValue(o[c])
			}
		}
		return writeTable(w, headers, rows, tableWidth)
	}
	headers := make([]string, len(k.columns))
	for i, c := range k.columns {
		headers[i] = c.header
	}
	rows := make([][]string, len(objs))
	for i, o := range objs {
		rows[i] = make([]string, len(k.columns))
		for j, c := range k.columns {
			rows[i][j] = c.value(s, ctx, o)
		}
	}
	return writeTable(w, headers, rows, tableWidth)
}

// project keeps only the given attributes (all when none are given).
func project(obj map[string]any, cols []string) map[string]any {
	if len(cols) == 0 {
		return obj
	}
	out := make(map[string]any, len(cols))
	for _, c := range cols {
		out[c] = obj[c]
	}
	return out
}

func writeStructured(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return fmt.Errorf("encode output as YAML: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// cellValue renders an attribute for a table cell: scalars as text, lists one element
// per line, objects as key='value' pairs; nested objects and lists in braces and
// brackets, so that long values wrap at their ", " separators.
func cellValue(v any) string {
	switch t := v.(type) {
	case []any:
		lines := make([]string, 0, len(t))
		for _, e := range t {
			lines = append(lines, cellValue(e))
		}
		return strings.Join(lines, "\n")
	case map[string]any:
		return pairs(t)
	default:
		return str(v)
	}
}

// pairs renders an object as k='v', k2=[...], k3={...} (keys sorted).
func pairs(m map[string]any) string {
	keys := sortedKeys(m)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+nested(m[k]))
	}
	return strings.Join(parts, ", ")
}

func nested(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case []any:
		items := make([]string, len(t))
		for i, e := range t {
			items[i] = nested(e)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case map[string]any:
		return "{" + pairs(t) + "}"
	default:
		return "'" + str(t) + "'"
	}
}

// plainValue renders an attribute for -o value: scalars bare, lists space-separated,
// objects as compact JSON.
func plainValue(v any) string {
	switch t := v.(type) {
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			if _, ok := e.(map[string]any); ok {
				parts = append(parts, compactJSON(e))
			} else {
				parts = append(parts, str(e))
			}
		}
		return strings.Join(parts, " ")
	case map[string]any:
		return compactJSON(t)
	default:
		return str(v)
	}
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// writeTable writes an aligned table with a header row. Cells may hold several lines.
// When the natural width exceeds maxWidth, the widest columns are narrowed and their
// cells wrapped (at ", " or spaces where possible) until the table fits.
func writeTable(w io.Writer, headers []string, rows [][]string, maxWidth int) error {
	const gap, maxWord, hardMin = 2, 40, 8
	n := len(headers)
	widths := make([]int, n) // natural: the longest line
	words := make([]int, n)  // the longest word (up to maxWord): ids never wrap if possible
	for i, h := range headers {
		widths[i] = utf8.RuneCountInString(h)
		words[i] = widths[i]
	}
	for _, r := range rows {
		for i, c := range r {
			for _, line := range strings.Split(c, "\n") {
				widths[i] = max(widths[i], utf8.RuneCountInString(line))
				for _, w := range strings.Fields(line) {
					words[i] = max(words[i], min(utf8.RuneCountInString(w), maxWord))
				}
			}
		}
	}
	total := func() int {
		t := gap * (n - 1)
		for _, x := range widths {
			t += x
		}
		return t
	}
	// Narrow the widest column first: down to its longest word, then (only if that is
	// not enough) down to hardMin, breaking words.
	for _, floor := range [][]int{words, nil} {
		for total() > maxWidth {
			widest := -1
			for i := range widths {
				lo := hardMin
				if floor != nil {
					lo = floor[i]
				}
				if widths[i] > lo && (widest < 0 || widths[i] > widths[widest]) {
					widest = i
				}
			}
			if widest < 0 {
				break
			}
			widths[widest]--
		}
	}
	var buf bytes.Buffer
	writeRow := func(cells []string) {
		wrapped := make([][]string, n)
		height := 1
		for i, c := range cells {
			wrapped[i] = wrapCell(c, widths[i])
			height = max(height, len(wrapped[i]))
		}
		for l := 0; l < height; l++ {
			var line strings.Builder
			for i := range cells {
				part := ""
				if l < len(wrapped[i]) {
					part = wrapped[i][l]
				}
				line.WriteString(part)
				if i < n-1 {
					line.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(part)+gap))
				}
			}
			buf.WriteString(strings.TrimRight(line.String(), " "))
			buf.WriteByte('\n')
		}
	}
	writeRow(headers)
	for _, r := range rows {
		writeRow(r)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// wrapCell splits a cell into lines of at most width runes, breaking at the last space
// that fits, else (a word longer than the width) hard.
func wrapCell(c string, width int) []string {
	var out []string
	for _, line := range strings.Split(c, "\n") {
		r := []rune(line)
		for len(r) > width {
			cut := width
			for i := width; i > 1; i-- {
				if r[i] == ' ' || r[i-1] == ' ' {
					cut = i
					break
				}
			}
			out = append(out, strings.TrimRight(string(r[:cut]), " "))
			r = []rune(strings.TrimLeft(string(r[cut:]), " "))
		}
		out = append(out, string(r))
	}
	return out
}
