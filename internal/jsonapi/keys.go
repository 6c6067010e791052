package jsonapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/loyalty-edge-sync/loyalty"
)

// checkKeys walks a JSON body alongside the Go type it is decoded into, and refuses what
// encoding/json would accept silently: a key that names a struct field only in another case
// ("AMOUNT" for "amount"; encoding/json matches names case-insensitively), and a key given twice
// in one object (encoding/json keeps the last). With either, what a proxy, a log or a fraud check
// reads in the body is not what the server acts on. Unknown keys are left to
// DisallowUnknownFields, malformed JSON to the decoder: the walk stops at the first syntax error
// and accepts. Inside a value whose type decodes itself (json.Unmarshaler), an interface or a
// type that does not fit the JSON, only repeated keys are refused.
func checkKeys(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	err := walkKeys(dec, t, "", 0)
	if errors.As(err, new(*loyalty.Error)) {
		return err
	}
	return nil // a syntax error, or EOF: the decoder reports it
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// maxDepth is how deeply a request body may nest arrays and objects: far more than any request
// (a program is a few levels deep), and few enough that the walk, which keeps a path per level,
// stays small (Token, unlike Decode, has no limit of its own).
const maxDepth = 64

// walkKeys reads one JSON value from dec, which t (nil: any) is to hold, depth levels down; path
// names it in messages ("" for the body itself).
func walkKeys(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	t = keyType(t)
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); ok && (d == '[' || d == '{') && depth >= maxDepth {
		return loyalty.Errorf(loyalty.EINVALID, "the JSON nests arrays and objects more than %d deep; no request does", maxDepth)
	}
	switch tok {
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkKeys(dec, elem, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	case json.Delim('{'):
		var fields *fieldTable
		var elem reflect.Type
		switch {
		case t == nil:
		case t.Kind() == reflect.Struct:
			fields = fieldsOf(t)
		case t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			name := key
			if path != "" {
				name = path + "." + key
			}
			if seen[key] {
				return loyalty.Errorf(loyalty.EINVALID, "field %s is given twice; send each field once", truncate(name, 80))
			}
			seen[key] = true
			if fields != nil {
				elem = fields.exact[key]
				if elem == nil {
					if want, ok := fields.folded[foldName(key)]; ok {
						return loyalty.Errorf(loyalty.EINVALID, "field %s is spelled %q: field names are case-sensitive (docs/API.md)", truncate(name, 80), want)
					}
				}
			}
			if err := walkKeys(dec, elem, name, depth+1); err != nil {
				return err
			}
		}
	default:
		return nil // a scalar
	}
	_, err = dec.Token() // the closing ] or }
	return err
}

// keyType returns the type whose keys the walk checks for a value t is to hold: t without its
// pointers, or nil (only repeated keys checked) for an interface or a type that decodes itself.
func keyType(t reflect.Type) reflect.Type {
	for t != nil {
		if t.Kind() == reflect.Interface || t.Implements(unmarshalerType) || t.Implements(textUnmarshalerType) {
			return nil
		}
		if t.Kind() != reflect.Pointer {
			if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
				return nil
			}
			return t
		}
		t = t.Elem()
	}
	return nil
}

// fieldTable is the JSON names of a struct's fields, as encoding/json decodes them.
type fieldTable struct {
	exact  map[string]reflect.Type // name: the field's type
	folded map[string]string       // foldName(name): name
}

var fieldTables sync.Map // reflect.Type: *fieldTable

// fieldsOf returns the field table of struct type t, cached.
func fieldsOf(t reflect.Type) *fieldTable {
	if ft, ok := fieldTables.Load(t); ok {
		return ft.(*fieldTable)
	}
	ft := &fieldTable{exact: map[string]reflect.Type{}, folded: map[string]string{}}
	// Level by level, so that a field hides those of its name promoted from deeper embedded
	// structs, as in encoding/json.
	visited := map[reflect.Type]bool{}
	for level := []reflect.Type{t}; len(level) > 0; {
		var next []reflect.Type
		for _, st := range level {
			if visited[st] {
				continue
			}
			visited[st] = true
			for i := range st.NumField() {
				f := st.Field(i)
				tag := f.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				if f.Anonymous && name == "" {
					et := f.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if et.Kind() == reflect.Struct {
						next = append(next, et) // its fields are promoted
						continue
					}
				}
				if !f.IsExported() {
					continue
				}
				if name == "" {
					name = f.Name
				}
				if _, ok := ft.exact[name]; !ok {
					ft.exact[name] = f.Type
				}
				if _, ok := ft.folded[foldName(name)]; !ok {
					ft.folded[foldName(name)] = name
				}
			}
		}
		level = next
	}
	fieldTables.Store(t, ft)
	return ft
}

// foldName folds a name the way encoding/json compares names case-insensitively.
func foldName(s string) string {
	return strings.Map(func(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }, s)
}
