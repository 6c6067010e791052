package web

import (
	"strconv"
)

// Group formats n with a comma between groups of three digits: 1234567 -> "1,234,567".
func Group(n int64) string {
	if n < 0 {
		return "-" + groupU(-uint64(n)) // also right for the smallest int64
	}
	return groupU(uint64(n))
}

// Money formats an amount in minor units (cents) as major units with two decimals and groups:
// 123456 -> "1,234.56", -5 -> "-0.05".
func Money(minor int64) string {
	neg := minor < 0
	u := uint64(minor)
	if neg {
		u = -u // also right for the smallest int64
	}
	major, cents := u/100, u%100
	s := groupU(major) + "." + string([]byte{byte('0' + cents/10), byte('0' + cents%10)})
	if neg {
		return "-" + s
	}
	return s
}

func groupU(u uint64) string {
	s := strconv.FormatUint(u, 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
