package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Change is one field that differs between two configurations, as the
// event log shows it: "destinations[0].port: 104 → 11112". Secrets (keys,
// passwords) show only that they changed.
type Change struct {
	Field string `json:"field"`
	Old   string `json:"old,omitempty"` // empty: added
	New   string `json:"new,omitempty"` // empty: removed
}

func (c Change) String() string {
	switch {
	case c.Old == "":
		return fmt.Sprintf("%s: added %s", c.Field, c.New)
	case c.New == "":
		return fmt.Sprintf("%s: removed %s", c.Field, c.Old)
	}
	return fmt.Sprintf("%s: %s → %s", c.Field, c.Old, c.New)
}

// masked stands for a secret's value.
const masked = "(secret)"

// Diff lists the fields that differ from old to new, by their JSON paths,
// in the order of the file. List elements are compared by position.
func Diff(old, new Config) []Change {
	var cs []Change
	diffValues("", reflect.ValueOf(old), reflect.ValueOf(new), false, &cs)
	return cs
}

// isSecret reports whether a field's JSON name is a secret's: its value is
// never shown.
func isSecret(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"password", "preshared", "private", "secret"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

func diffValues(path string, a, b reflect.Value, secret bool, cs *[]Change) {
	switch a.Kind() {
	case reflect.Struct:
		for _, f := range jsonFields(a.Type()) {
			diffValues(join(path, f.name), a.Field(f.index), b.Field(f.index), secret || isSecret(f.name), cs)
		}
	case reflect.Slice, reflect.Array:
		for i := range max(a.Len(), b.Len()) {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= a.Len():
				*cs = append(*cs, Change{Field: p, New: describe(b.Index(i), secret)})
			case i >= b.Len():
				*cs = append(*cs, Change{Field: p, Old: describe(a.Index(i), secret)})
			default:
				diffValues(p, a.Index(i), b.Index(i), secret, cs)
			}
		}
	default:
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return
		}
		*cs = append(*cs, Change{Field: orTop(path), Old: describe(a, secret), New: describe(b, secret)})
	}
}

// describe shows a value in a change: strings quoted, "" as (empty), a
// struct as its non-zero fields, secrets masked.
func describe(v reflect.Value, secret bool) string {
	if secret {
		return masked
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return "(empty)"
		}
		return fmt.Sprintf("%q", v.String())
	case reflect.Struct:
		var parts []string
		for _, f := range jsonFields(v.Type()) {
			if fv := v.Field(f.index); !fv.IsZero() {
				parts = append(parts, f.name+" "+describe(fv, isSecret(f.name)))
			}
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case reflect.Slice, reflect.Array:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = describe(v.Index(i), false)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}
