package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Limits on the size of what a config may hold. A site config is a few kilobytes; the
// limits keep a wrong file, or a hostile one, from eating the box's memory or flooding
// its logs, emails and status page.
const (
	MaxFileSize = 1 << 20 // bytes in a config file
	MaxNameLen  = 64      // characters in site, uplink names and SIP peer names
	MaxTextLen  = 256     // bytes in any other string: hostnames, URLs, paths, addresses
)

// typeChecker walks the generic TOML tree alongside Config's Go type before the real decode.
// The library stops at the first mismatch and words it in Go's terms; this reports every
// one, in plain words, at its line and column.
type typeChecker struct {
	v    *validator
	hard int // problems that make the real decode fail; the others only fail validation
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType        = reflect.TypeFor[time.Duration]()
	portType            = reflect.TypeFor[Port]()
)

// fail records a problem that stops the decode.
func (tc *typeChecker) fail(path toml.Key, format string, args ...any) {
	tc.hard++
	tc.v.errf(path.String(), format, args...)
}

// walk checks data against the Go type t, recursively.
func (tc *typeChecker) walk(path toml.Key, data any, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		tc.text(path, data, t)
	case t == durationType:
		tc.duration(path, data)
	case t.Kind() == reflect.Struct:
		tc.table(path, data, t)
	case t.Kind() == reflect.Map:
		tc.mapping(path, data, t)
	case t.Kind() == reflect.Slice:
		tc.list(path, data, t)
	case t.Kind() == reflect.String:
		if s, ok := data.(string); ok {
			tc.str(path, s)
		} else {
			tc.fail(path, "must be text in quotes, got %s", describe(data))
		}
	case t.Kind() == reflect.Bool:
		if _, ok := data.(bool); !ok {
			tc.fail(path, "must be true or false, got %s", describe(data))
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		tc.integer(path, data, t)
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		switch data.(type) {
		case int64, float64:
		default:
			tc.fail(path, "must be a number, got %s", describe(data))
		}
	}
}

// table checks a TOML table against a struct; unknown keys are left to MetaData.Undecoded.
func (tc *typeChecker) table(path toml.Key, data any, t reflect.Type) {
	m, ok := data.(map[string]any)
	if !ok {
		tc.fail(path, "must be a table ([section] or { key = value }), got %s", describe(data))
		return
	}
	for _, k := range SortedNames(m) {
		if f, ok := fieldFor(t, k); ok {
			tc.walk(child(path, k), m[k], f.Type)
		}
	}
}

// child is path with one more key; a copy, so that siblings never share a backing array.
func child(path toml.Key, k string) toml.Key {
	return append(append(toml.Key{}, path...), k)
}

// fieldFor finds the struct field a key decodes into, as the library does: the exact name
// first, then one that differs only in case.
func fieldFor(t reflect.Type, k string) (reflect.StructField, bool) {
	var fold *reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == k {
			return f, true
		}
		if fold == nil && strings.EqualFold(name, k) {
			fold = &f
		}
	}
	if fold != nil {
		return *fold, true
	}
	return reflect.StructField{}, false
}

// mapping checks a table of named entries ([sip_peers.NAME], [forward.NAME]).
func (tc *typeChecker) mapping(path toml.Key, data any, t reflect.Type) {
	m, ok := data.(map[string]any)
	if !ok {
		tc.fail(path, "must be a table of named entries, like [%s.NAME], got %s", path, describe(data))
		return
	}
	for _, k := range SortedNames(m) {
		tc.walk(child(path, k), m[k], t.Elem())
	}
}

// list checks a TOML array (or array of tables) against a slice.
func (tc *typeChecker) list(path toml.Key, data any, t reflect.Type) {
	rv := reflect.ValueOf(data)
	if rv.Kind() != reflect.Slice {
		tc.fail(path, "must be a list in [brackets], got %s", describe(data))
		return
	}
	for i := range rv.Len() {
		tc.walk(path, rv.Index(i).Interface(), t.Elem())
	}
}

// integer checks a whole number and that it fits the field.
func (tc *typeChecker) integer(path toml.Key, data any, t reflect.Type) {
	n, ok := data.(int64)
	if !ok {
		tc.fail(path, "must be a number, got %s", describe(data))
		return
	}
	lo, hi := intRange(t.Kind())
	if n < lo || (hi >= 0 && uint64(n) > uint64(hi)) {
		if t == portType {
			tc.fail(path, "must be a port number from 1 to %d (0: off), got %d", hi, n)
			return
		}
		tc.fail(path, "must be a number from %d to %d, got %d", lo, hi, n)
	}
}

// intRange is what a kind of integer field can hold (hi -1: anything up to int64's max).
func intRange(k reflect.Kind) (lo, hi int64) {
	switch k {
	case reflect.Int8:
		return math.MinInt8, math.MaxInt8
	case reflect.Int16:
		return math.MinInt16, math.MaxInt16
	case reflect.Int32:
		return math.MinInt32, math.MaxInt32
	case reflect.Uint8:
		return 0, math.MaxUint8
	case reflect.Uint16:
		return 0, math.MaxUint16
	case reflect.Uint32:
		return 0, math.MaxUint32
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return 0, -1
	}
	return math.MinInt64, -1
}

// duration checks a duration: text like "30s", or (as the library allows) nanoseconds.
func (tc *typeChecker) duration(path toml.Key, data any) {
	switch d := data.(type) {
	case int64:
	case string:
		if len(d) > MaxTextLen {
			tc.fail(path, "is too long (%d bytes; at most %d)", len(d), MaxTextLen)
		} else if _, err := time.ParseDuration(d); err != nil {
			tc.fail(path, "must be a duration like \"30s\", \"5m\" or \"1h\", got %s", describe(data))
		}
	default:
		tc.fail(path, "must be a duration in quotes, like \"30s\", \"5m\" or \"1h\", got %s", describe(data))
	}
}

// text runs a value through its type's UnmarshalText, as the real decode will, so that
// every unparsable address or port is reported, not only the first.
func (tc *typeChecker) text(path toml.Key, data any, t reflect.Type) {
	var s string
	switch d := data.(type) {
	case string:
		s = d
	case int64, bool:
		s = fmt.Sprint(d)
	case float64:
		s = fmt.Sprintf("%f", d) // as the library formats it
	default:
		if _, ok := data.(encoding.TextMarshaler); !ok {
			tc.fail(path, "must be text in quotes, got %s", describe(data))
		}
		return // a date or time: the library formats it, the value's own check words it
	}
	if len(s) > MaxTextLen {
		tc.fail(path, "is too long (%d bytes; at most %d)", len(s), MaxTextLen)
		return
	}
	u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
	if err := u.UnmarshalText([]byte(s)); err != nil {
		tc.fail(path, "%s", err)
	}
}

// str checks a plain string's size and characters. These do not stop the decode, so they
// are reported with every other problem in the file.
func (tc *typeChecker) str(path toml.Key, s string) {
	field := path.String()
	limit, unit, n := MaxTextLen, "bytes", len(s)
	if nameFields[field] {
		limit, unit, n = MaxNameLen, "characters", utf8.RuneCountInString(s)
	}
	if n > limit {
		tc.v.errf(field, "is too long (%d %s; at most %d)", n, unit, limit)
		return
	}
	if msg := badChars(s); msg != "" {
		tc.v.errf(field, "%s", msg)
	}
}

// nameFields are the names people read on the status page and in emails.
var nameFields = map[string]bool{"site": true, "uplink.primary.name": true, "uplink.backup.name": true}

// badChars says why s holds characters no config string may, or "": control characters
// (and bidi overrides) could forge lines in logs and emails or disguise text on the page.
func badChars(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Sprintf("contains the control character %U: not allowed, it could forge lines in logs and emails", r)
		}
	}
	return ""
}

// describe words a TOML value for a person: `the text "5060"`, `the number 5`, `a list`.
func describe(data any) string {
	switch d := data.(type) {
	case string:
		return "the text " + shortQuote(d)
	case int64:
		return "the number " + strconv.FormatInt(d, 10)
	case float64:
		return "the number " + strconv.FormatFloat(d, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(d)
	case []map[string]any:
		return "a list of tables"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date or time"
	}
	return fmt.Sprintf("a %T", data)
}

// shortQuote quotes s, cut to a length that fits in one line of an error.
func shortQuote(s string) string {
	const max = 40
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// checkTypes reports every type problem in the parsed tree; it returns false if the real
// decode cannot succeed.
func checkTypes(v *validator, tree map[string]any) bool {
	tc := typeChecker{v: v}
	tc.walk(nil, tree, reflect.TypeFor[Config]())
	return tc.hard == 0
}
