package web

import (
	"strconv"

	"github.com/loyalty-edge-sync/loyalty"
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
func Money(minor int64) string { return MoneyIn(minor, 2) }

// MoneyOf formats an amount in minor units of currency with that currency's decimals
// (loyalty.CurrencyDigits): MoneyOf(1250, "EUR") is "12.50", MoneyOf(2500, "JPY") "2,500".
func MoneyOf(minor int64, currency string) string {
	return MoneyIn(minor, loyalty.CurrencyDigits(currency))
}

// MoneyIn formats an amount in minor units of a currency with digits decimals (0 to 4;
// loyalty.CurrencyDigits) as major units with groups: MoneyIn(123456, 2) is "1,234.56",
// MoneyIn(2500, 0) "2,500", MoneyIn(1250, 3) "1.250".
func MoneyIn(minor int64, digits int) string {
	digits = min(max(digits, 0), 4)
	neg := minor < 0
	u := uint64(minor)
	if neg {
		u = -u // also right for the smallest int64
	}
	unit := uint64(1)
	for range digits {
		unit *= 10
	}
	s := groupU(u / unit)
	if digits > 0 {
		frac := strconv.FormatUint(u%unit+unit, 10)[1:] // leading zeros kept
		s += "." + frac
	}
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
