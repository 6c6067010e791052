package loyalty

import "math/big"

// PointValue is what points are worth to the chain, for the points liability in reports: Points
// points are worth Minor minor units of the program's currency ({"minor": 1, "points": 1}: a
// point is worth a cent; {"minor": 1, "points": 2}: half a cent). It changes nothing a member
// earns or spends: rewards keep their own points cost.
type PointValue struct {
	Minor  int64 `json:"minor"`
	Points int64 `json:"points"`
}

// MaxPointValue bounds both terms of a PointValue, so that the value of any liability can be
// computed exactly (Value uses big integers; the result saturates at the largest int64).
const MaxPointValue = 1_000_000

// Validate checks the point value's terms.
func (v *PointValue) Validate() error {
	if v == nil {
		return nil
	}
	if v.Minor < 0 || v.Minor > MaxPointValue || v.Points < 1 || v.Points > MaxPointValue {
		return Errorf(EINVALID, "point_value: minor must be 0 to %d and points 1 to %d (1 and 1: a point is worth one minor unit)", MaxPointValue, MaxPointValue)
	}
	return nil
}

// Value returns what points are worth in minor units of the program's currency, rounded toward
// zero, and false when the program states no point value (v is nil).
func (v *PointValue) Value(points int64) (int64, bool) {
	if v == nil || v.Points <= 0 {
		return 0, false
	}
	x := new(big.Int).Mul(big.NewInt(points), big.NewInt(v.Minor))
	x.Quo(x, big.NewInt(v.Points))
	if !x.IsInt64() {
		if x.Sign() < 0 {
			return -1 << 63, true
		}
		return 1<<63 - 1, true
	}
	return x.Int64(), true
}
