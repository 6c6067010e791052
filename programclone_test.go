package loyalty_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

var timeType = reflect.TypeFor[time.Time]()

// fill sets every field reachable from v to a value that is not its zero: slices of two
// elements, pointers allocated, numbers and strings from n (n > 0).
func fill(v reflect.Value, n int) {
	switch {
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(time.Date(2026, 12, n%28+1, 0, 0, 0, 0, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), n+i)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		v.SetMapIndex(k, e)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), n+i)
		}
	case reflect.String:
		v.SetString(string(rune('a' + n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(n))
	}
}

// bump changes every value reachable from v in place: through its pointers, slice elements and
// map entries, never replacing a slice, map or pointer.
func bump(v reflect.Value) {
	if v.Type() == timeType {
		v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Hour)))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			bump(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			bump(v.Index(i))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			bump(e)
			v.SetMapIndex(it.Key(), e)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			bump(v.Field(i))
		}
	case reflect.String:
		v.SetString(v.String() + "!")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1)
	}
}

// TestProgramCloneSharesNothing: a clone of a program with every field set equals it, and
// changing everything in the clone leaves the program as it was. The program's type holds
// nothing Clone cannot copy: no interfaces, functions or channels, and unexported fields only in
// time.Time.
func TestProgramCloneSharesNothing(t *testing.T) {
	var walk func(reflect.Type, string)
	seen := map[reflect.Type]bool{}
	walk = func(ty reflect.Type, path string) {
		if seen[ty] || ty == timeType {
			return
		}
		seen[ty] = true
		switch ty.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			walk(ty.Elem(), path+"[]")
		case reflect.Map:
			walk(ty.Key(), path+"{key}")
			walk(ty.Elem(), path+"{}")
		case reflect.Struct:
			for i := range ty.NumField() {
				f := ty.Field(i)
				if !f.IsExported() {
					t.Errorf("%s.%s is unexported: Clone would share it", path, f.Name)
				}
				walk(f.Type, path+"."+f.Name)
			}
		case reflect.Interface, reflect.Func, reflect.Chan, reflect.UnsafePointer:
			t.Errorf("%s is a %s: Clone cannot copy it", path, ty.Kind())
		}
	}
	walk(reflect.TypeFor[loyalty.Program](), "Program")

	var p loyalty.Program
	fill(reflect.ValueOf(&p).Elem(), 1)
	before, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Clone()
	if !reflect.DeepEqual(c, p) {
		t.Fatalf("the clone differs from the program")
	}
	bump(reflect.ValueOf(&c).Elem()) // every field, in place, through every slice and pointer
	after, _ := json.Marshal(p)
	if string(after) != string(before) {
		t.Fatalf("changing the clone changed the program:\nbefore %s\nafter  %s", before, after)
	}
	if reflect.DeepEqual(c, p) {
		t.Fatal("bump changed nothing in the clone: the test proves nothing")
	}
	var zero loyalty.Program
	if z := zero.Clone(); !reflect.DeepEqual(z, zero) {
		t.Errorf("a zero program's clone: %+v", z)
	}
}

// TestDecodeProgramHandsOutCopies: DecodeProgram parses as json.Unmarshal does, and an edit to
// what one call returned is not in what the next call returns.
func TestDecodeProgramHandsOutCopies(t *testing.T) {
	body, err := json.Marshal(richProgram())
	if err != nil {
		t.Fatal(err)
	}
	var want loyalty.Program
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	first, err := loyalty.DecodeProgram(string(body))
	if err != nil || !reflect.DeepEqual(first, want) {
		t.Fatalf("first decode: %v, %+v", err, first)
	}
	bump(reflect.ValueOf(&first).Elem())
	first.Campaigns = append(first.Campaigns, loyalty.Campaign{ID: "added"})
	for i := range 2 * 16 { // past the cache's bound: other programs come and go
		if _, err := loyalty.DecodeProgram(string(body)); err != nil {
			t.Fatal(err)
		}
		other := want.Clone()
		other.Version = int64(1000 + i)
		b, _ := json.Marshal(other)
		if got, err := loyalty.DecodeProgram(string(b)); err != nil || got.Version != other.Version {
			t.Fatalf("program %d: %v, version %d", i, err, got.Version)
		}
	}
	again, err := loyalty.DecodeProgram(string(body))
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("after an edit to an earlier copy, the program decodes as %+v, %v", again, err)
	}
	if _, err := loyalty.DecodeProgram(`{"version": "one"}`); err == nil {
		t.Error("a program that is not valid JSON for its type decoded")
	}
}

// BenchmarkDecodeProgram: the hub's current program as DecodeProgram hands it out again (a copy
// of the parse kept) beside parsing its JSON each time, as the stores did before.
func BenchmarkDecodeProgram(b *testing.B) {
	body, err := json.Marshal(richProgram())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("json.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var p loyalty.Program
			if err := json.Unmarshal(body, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeProgram", func(b *testing.B) {
		s := string(body)
		for b.Loop() {
			if _, err := loyalty.DecodeProgram(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}
