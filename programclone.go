package loyalty

import (
	"encoding/json"
	"reflect"
	"sync"
)

// Clone returns a deep copy of p: its slices and pointers are its own, so the copy may be changed
// without changing p. A parsed program can then be kept and handed out again (the hub parses a
// program version once, not at every transaction) without a caller's edit reaching the next one.
func (p Program) Clone() Program {
	var out Program
	deepCopy(reflect.ValueOf(&out).Elem(), reflect.ValueOf(p))
	return out
}

// deepCopy sets dst, a settable value of src's type, to a copy of src that shares no slice, map
// or pointer target with it. A struct is copied whole first, then its exported fields are copied
// deeply; unexported fields stay shared, which is right for the only ones a program holds, those
// of time.Time (its *time.Location is never changed). A program holds no interfaces, functions or
// channels (TestProgramCloneSharesNothing walks its type).
func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		v := reflect.New(src.Type().Elem())
		deepCopy(v.Elem(), src.Elem())
		dst.Set(v)
	case reflect.Slice:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		v := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			deepCopy(v.Index(i), src.Index(i))
		}
		dst.Set(v)
	case reflect.Array:
		for i := range src.Len() {
			deepCopy(dst.Index(i), src.Index(i))
		}
	case reflect.Map:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		v := reflect.MakeMapWithSize(src.Type(), src.Len())
		for it := src.MapRange(); it.Next(); {
			e := reflect.New(src.Type().Elem()).Elem()
			deepCopy(e, it.Value())
			v.SetMapIndex(it.Key(), e)
		}
		dst.Set(v)
	case reflect.Struct:
		dst.Set(src)
		for i := range src.NumField() {
			if f := dst.Field(i); f.CanSet() {
				deepCopy(f, src.Field(i))
			}
		}
	default:
		dst.Set(src)
	}
}

// programs holds the programs DecodeProgram parsed, by their JSON, and the JSON in the order
// they were kept, oldest first.
var programs struct {
	sync.Mutex
	m     map[string]*Program
	order []string
}

// programsKept bounds programs: the current version and the older ones whose deltas are still
// arriving. When it is full, the program kept longest ago goes.
const programsKept = 16

// DecodeProgram parses a program stored as JSON, once per distinct JSON in this process: the hub
// reads its current program in most transactions (every pull, push and online call), and parsing
// it was a measurable part of each. Every call returns a copy of its own (Clone), so a caller that
// edits its program changes nothing another one reads. The JSON is the cache's key, so programs
// from different databases, or a version number reused after a restore, never mix.
func DecodeProgram(body string) (Program, error) {
	programs.Lock()
	p, ok := programs.m[body]
	programs.Unlock()
	if ok {
		return p.Clone(), nil
	}
	var parsed Program
	if err := json.Unmarshal([]byte(body), &parsed); err != nil {
		return Program{}, err
	}
	kept := parsed.Clone()
	programs.Lock()
	if programs.m == nil {
		programs.m = make(map[string]*Program, programsKept)
	}
	if _, ok := programs.m[body]; !ok { // another caller may have kept it meanwhile
		if len(programs.order) >= programsKept {
			delete(programs.m, programs.order[0])
			programs.order = programs.order[1:]
		}
		programs.m[body] = &kept
		programs.order = append(programs.order, body)
	}
	programs.Unlock()
	return parsed, nil
}
