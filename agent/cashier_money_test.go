package agent

import "testing"

// TestTillMoney: amounts as cashiers type them and as the till's receipts show them.
func TestTillMoney(t *testing.T) {
	for in, want := range map[string]int64{
		"12.99": 1299, "12,99": 1299, "12": 1200, "12.5": 1250, "0.05": 5, " 1 234.56 ": 123456,
		"1,234.56": 123456, "1.234,56": 123456, "1,000.00": 100000, "1.000.000": 100000000, "1,234,567.89": 123456789,
		"": 0,
	} {
		if got, ok := money(in); !ok || got != want {
			t.Errorf("money(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"12.", ".5", "1,23.45", "1,234.567", "1.2.3", "1,234,56.7", "-5", "1e3", "12..99", "1,,000",
		"99999999999999.99", "1,2345.00", "1,234.5,6", "abc", "1.000,000.00", "1,000", "1.999"} {
		if got, ok := money(in); ok {
			t.Errorf("money(%q) = %d, want refused", in, got)
		}
	}
}
