package adminhttp

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/keytrail/keytrail/services/control"
)

// decode reads a strict JSON body into v: one JSON object (not null), its
// members named exactly as documented (case included), none twice, none
// unknown, nothing after it. An empty body is an empty object when empty is
// allowed. A problem names the member and the rule, never a Go type.
func decode(r *http.Request, v any, emptyOK bool) error {
	body, err := readBody(r)
	info(r).body = sha256.Sum256(body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return nil
		}
		return &control.Error{Code: control.CodeInvalidArgument, Message: "a JSON body is required"}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if cs, ok := params["charset"]; err != nil || mt != "application/json" || (ok && !strings.EqualFold(cs, "utf-8")) {
			return &control.Error{Code: control.CodeUnsupportedMediaType, Message: "the body must be application/json (UTF-8)"}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := checkShape(dec, reflect.TypeOf(v), "", true); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return &control.Error{Code: control.CodeInvalidArgument, Message: "invalid JSON: data after the object"}
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ce *control.Error
		if errors.As(err, &ce) {
			return ce
		}
		return &control.Error{Code: control.CodeInvalidArgument, Message: "invalid JSON: " + jsonProblem(err)}
	}
	return nil
}

// readBody reads a request's body whole, saying why it could not as a
// problem (over the size limit, or unreadable).
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return body, &control.Error{Code: control.CodeInvalidArgument, Message: fmt.Sprintf("the body is over %d bytes", tooBig.Limit)}
		}
		return body, &control.Error{Code: control.CodeInvalidArgument, Message: "the body could not be read"}
	}
	return body, nil
}

// checkShape walks the next JSON value against type t (nil: any): objects
// of a struct type hold only its members, spelt exactly; no object holds a
// member twice; the top-level value is an object.
func checkShape(dec *json.Decoder, t reflect.Type, at string, top bool) error {
	// A member whose Go type is not a pointer, slice or map may not be null:
	// null would read as its zero value.
	required := t != nil && t.Kind() != reflect.Pointer && t.Kind() != reflect.Slice && t.Kind() != reflect.Map && t.Kind() != reflect.Interface
	if t != nil && reflect.PointerTo(t).Implements(nullableType) {
		// null is its own value (remove); a value is checked as the type
		// it holds.
		required, t = false, t.Field(1).Type.Elem()
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		tok, err := dec.Token()
		if err == nil && tok == nil && !required {
			return nil // an optional time left empty
		}
		str, ok := tok.(string)
		if _, perr := time.Parse(time.RFC3339Nano, str); err != nil || !ok || perr != nil {
			return &control.Error{Code: control.CodeInvalidArgument, Message: strings.TrimPrefix(at, ".") + `: a time is RFC 3339, e.g. "2026-12-31T23:59:00Z"`}
		}
		return nil
	}
	if t == durationType {
		tok, err := dec.Token()
		if err == nil && tok == nil && !required {
			return nil
		}
		if str, ok := tok.(string); err == nil && ok {
			if _, err := parseDuration(str); err != nil {
				return &control.Error{Code: control.CodeInvalidArgument, Message: strings.TrimPrefix(at, ".") + ": " + err.(*control.Error).Message}
			}
			return nil
		}
		return &control.Error{Code: control.CodeInvalidArgument, Message: strings.TrimPrefix(at, ".") + ": a duration is a string, e.g. \"720h\" or \"30d\""}
	}
	if t != nil && (t.Implements(unmarshaler) || reflect.PointerTo(t).Implements(unmarshaler) || t.Kind() == reflect.Interface) {
		t = nil // its own parser decides (times)
	}
	tok, err := dec.Token()
	if err != nil {
		return &control.Error{Code: control.CodeInvalidArgument, Message: "invalid JSON: " + jsonProblem(err)}
	}
	if tok == nil && !top && required {
		return &control.Error{Code: control.CodeInvalidArgument, Message: strings.TrimPrefix(at, ".") + ": null is not a value here; leave the member out"}
	}
	d, isDelim := tok.(json.Delim)
	if top && (!isDelim || d != '{') {
		return &control.Error{Code: control.CodeInvalidArgument, Message: "the body must be a JSON object"}
	}
	if !isDelim {
		return nil
	}
	switch d {
	case '{':
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return &control.Error{Code: control.CodeInvalidArgument, Message: "invalid JSON: " + jsonProblem(err)}
			}
			name, _ := kt.(string)
			member := strings.TrimPrefix(at+"."+name, ".")
			if seen[name] {
				return &control.Error{Code: control.CodeInvalidArgument, Message: fmt.Sprintf("%s: given twice", member)}
			}
			seen[name] = true
			var ft reflect.Type
			switch {
			case fields != nil:
				var ok bool
				if ft, ok = fields[name]; !ok {
					return &control.Error{Code: control.CodeInvalidArgument, Message: unknownMember(member, name, fields)}
				}
			case t != nil && t.Kind() == reflect.Map:
				ft = t.Elem()
			}
			if err := checkShape(dec, ft, member, false); err != nil {
				return err
			}
		}
	case '[':
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkShape(dec, et, fmt.Sprintf("%s[%d]", at, i), false); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return &control.Error{Code: control.CodeInvalidArgument, Message: "invalid JSON: " + jsonProblem(err)}
	}
	return nil
}

// unknownMember says a member is not one of fields, and which it may have
// meant when it differs only in case.
func unknownMember(member, name string, fields map[string]reflect.Type) string {
	for f := range fields {
		if strings.EqualFold(f, name) {
			return fmt.Sprintf("%s: unknown member; members are spelt exactly, did you mean %q?", member, f)
		}
	}
	return fmt.Sprintf("%s: unknown member", member)
}

var (
	unmarshaler  = reflect.TypeFor[json.Unmarshaler]()
	durationType = reflect.TypeFor[duration]()
	timeType     = reflect.TypeFor[time.Time]()
	nullableType = reflect.TypeFor[interface{ acceptsNull() }]()
)

// fieldCache holds each struct type's JSON member names.
var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields are a struct's JSON member names, exactly as encoding/json
// writes them, with their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			for n, ft := range jsonFields(f.Type) {
				fields[n] = ft
			}
			continue
		case name == "":
			name = f.Name
		}
		fields[name] = f.Type
	}
	fieldCache.Store(t, fields)
	return fields
}

// jsonProblem describes a decoding error without echoing the input or
// naming a Go type.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Sprintf("a value must be %s (a number out of range?)", kindName(typ.Type))
	case errors.As(err, &typ):
		return fmt.Sprintf("%s must be %s", typ.Field, kindName(typ.Type))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown member " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected end of input"
	}
	return "not a JSON object of the expected shape"
}

// kindName names what JSON a Go type takes.
func kindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a value of another type"
}
