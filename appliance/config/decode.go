package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Reading a configuration strictly: a typo in a key must not silently drop
// a setting (a misspelled "destinations" would remove every destination),
// so a key the configuration does not have is an error that names its path
// and the nearest known key, a value of the wrong kind names its field, and
// a syntax error says where it is.

// SyntaxError is JSON that cannot be read, and where (1-based).
type SyntaxError struct {
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg) }

// Decode reads a configuration from JSON into c. Keys absent from the JSON
// keep c's values. A syntax error is a *SyntaxError; unknown keys and
// values of the wrong kind are a ValidationError, one FieldError each, with
// paths like destinations[0].port. Decode does not Validate.
func Decode(b []byte, c *Config) error {
	var tree any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&tree); err != nil {
		return syntaxError(b, d.InputOffset(), err)
	}
	if _, err := d.Token(); err != io.EOF {
		return syntaxError(b, d.InputOffset(), errors.New("more after the configuration's closing }"))
	}
	var errs ValidationError
	checkFields(reflect.TypeFor[Config](), tree, "", &errs)
	if len(errs) > 0 {
		return errs
	}
	if err := json.Unmarshal(b, c); err != nil {
		// checkFields saw every kind: this is a value out of its type's
		// range (a port of 1e10).
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return syntaxError(b, te.Offset, fmt.Errorf("%s: %v does not fit in %v", te.Field, te.Value, te.Type))
		}
		return syntaxError(b, 0, err)
	}
	return nil
}

// syntaxError places err in b: at the offset a *json.SyntaxError gives
// (just after the byte at fault), else after the byte at offset.
func syntaxError(b []byte, offset int64, err error) error {
	var se *json.SyntaxError
	msg := err.Error()
	switch {
	case errors.As(err, &se):
		offset = se.Offset
		msg = strings.TrimPrefix(se.Error(), "json: ")
	case errors.Is(err, io.EOF):
		msg = "the file is empty: a configuration is a JSON object, {…}"
	case errors.Is(err, io.ErrUnexpectedEOF):
		offset = int64(len(b)) + 1
		msg = "the file ends too early (a } or ] missing?)"
	}
	line, col := position(b, int(max(offset-1, 0)))
	return &SyntaxError{Line: line, Column: col, Msg: msg}
}

// position is the line and column (1-based, in bytes) of b[i]; i may be
// len(b), just after the end.
func position(b []byte, i int) (line, col int) {
	before := b[:min(i, len(b))]
	line = bytes.Count(before, []byte("\n")) + 1
	col = len(before) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// checkFields walks a JSON value against the Go type it will be read into,
// adding an error for each unknown key and each value of the wrong kind.
func checkFields(t reflect.Type, v any, path string, errs *ValidationError) {
	if v == nil { // null leaves the field as it is
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	add := func(msg string) { *errs = append(*errs, FieldError{Field: orTop(path), Msg: msg}) }
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			add("want an object {…}, got " + jsonKind(v))
			return
		}
		fields := jsonFields(t)
		for _, key := range sortedKeys(obj) {
			f, ok := lookupField(fields, key)
			if !ok {
				*errs = append(*errs, FieldError{Field: join(path, key), Msg: unknownMsg(key, fields)})
				continue
			}
			checkFields(f.typ, obj[key], join(path, key), errs)
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			add("want a list […], got " + jsonKind(v))
			return
		}
		for i, x := range arr {
			checkFields(t.Elem(), x, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			add("want an object {…}, got " + jsonKind(v))
			return
		}
		for _, key := range sortedKeys(obj) {
			checkFields(t.Elem(), obj[key], join(path, key), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			add("want a string in quotes, got " + jsonKind(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			add("want true or false, got " + jsonKind(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if _, err := n.Int64(); !ok || err != nil {
			add("want a whole number, got " + jsonKind(v))
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			add("want a number, got " + jsonKind(v))
		}
	}
}

func orTop(path string) string {
	if path == "" {
		return "(the whole file)"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// sortedKeys: the same file always gives the same errors, in order.
func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// jsonKind names a decoded JSON value for a person, with the value itself
// when it is short.
func jsonKind(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			return "a string"
		}
		return fmt.Sprintf("the string %q", x)
	case json.Number:
		return "the number " + x.String()
	case bool:
		return fmt.Sprint(x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return "null"
}

// field is a struct field as JSON names it.
type field struct {
	name  string
	typ   reflect.Type
	index int // in the struct
}

// jsonFields lists t's fields by their JSON names, as encoding/json reads
// them (tagged name, else the Go name; "-" and unexported fields skipped).
func jsonFields(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		fs = append(fs, field{name, f.Type, i})
	}
	return fs
}

// lookupField finds key as encoding/json does: the exact name first, then
// ignoring case.
func lookupField(fs []field, key string) (field, bool) {
	for _, f := range fs {
		if f.name == key {
			return f, true
		}
	}
	for _, f := range fs {
		if strings.EqualFold(f.name, key) {
			return f, true
		}
	}
	return field{}, false
}

// unknownMsg says a key is unknown, with the nearest known name when one
// is close enough to be a typo, else the names known there.
func unknownMsg(key string, fs []field) string {
	best, bestDist := "", -1
	for _, f := range fs {
		d := editDistance(strings.ToLower(key), strings.ToLower(f.name))
		if bestDist < 0 || d < bestDist {
			best, bestDist = f.name, d
		}
	}
	if best != "" && bestDist <= max(1, min(3, len(best)/3)) {
		return fmt.Sprintf("unknown field; did you mean %s?", best)
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return "unknown field; known here: " + strings.Join(names, ", ")
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// bytes each cost one ("prot" is one from "port").
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
