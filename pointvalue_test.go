package loyalty_test

import (
	"math"
	"math/big"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
)

// FuzzPointValue: the value of any number of points is the exact quotient, rounded toward zero,
// saturated at the int64 bounds, for every valid point value; invalid ones are refused.
func FuzzPointValue(f *testing.F) {
	f.Add(int64(430), int64(1), int64(1))
	f.Add(int64(7), int64(1), int64(2))
	f.Add(int64(-7), int64(1), int64(2))
	f.Add(int64(math.MaxInt64), int64(loyalty.MaxPointValue), int64(1))
	f.Add(int64(math.MinInt64), int64(loyalty.MaxPointValue), int64(3))
	f.Add(int64(5), int64(-1), int64(0))
	f.Fuzz(func(t *testing.T, points, minor, per int64) {
		v := &loyalty.PointValue{Minor: minor, Points: per}
		valid := minor >= 0 && minor <= loyalty.MaxPointValue && per >= 1 && per <= loyalty.MaxPointValue
		if err := v.Validate(); (err == nil) != valid {
			t.Fatalf("Validate(%+v) = %v, valid %t", v, err, valid)
		}
		if !valid {
			return
		}
		got, ok := v.Value(points)
		want := new(big.Int).Quo(new(big.Int).Mul(big.NewInt(points), big.NewInt(minor)), big.NewInt(per))
		if want.Cmp(big.NewInt(math.MaxInt64)) > 0 {
			want.SetInt64(math.MaxInt64)
		} else if want.Cmp(big.NewInt(math.MinInt64)) < 0 {
			want.SetInt64(math.MinInt64)
		}
		if !ok || got != want.Int64() {
			t.Fatalf("%d points at %d/%d: %d, %t; want %d", points, minor, per, got, ok, want.Int64())
		}
	})
}

func TestPointValue_None(t *testing.T) {
	var v *loyalty.PointValue
	if _, ok := v.Value(10); ok {
		t.Error("a program without a point value gave a value")
	}
	p := loyalty.DefaultProgram()
	p.PointValue = &loyalty.PointValue{Minor: 1, Points: 0}
	if err := p.Validate(); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("a point value of 1 per 0 points: %v, want EINVALID", err)
	}
}
