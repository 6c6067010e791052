package agent

import "testing"

// TestTillMoney: amounts as cashiers type them and as the till's receipts show them.
func TestTillMoney(t *testing.T) {
	for in, want := range map[string]int64{
		"12.99": 1299, "12,99": 1299, "12": 1200, "12.5": 1250, "0.05": 5, " 1 234.56 ": 123456,
		"1,234.56": 123456, "1.234,56": 123456, "1,000.00": 100000, "1.000.000": 100000000, "1,234,567.89": 123456789,
		"": 0,
	} {
		if got, ok := money(in, 2); !ok || got != want {
			t.Errorf("money(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"12.", ".5", "1,23.45", "1,234.567", "1.2.3", "1,234,56.7", "-5", "1e3", "12..99", "1,,000",
		"99999999999999.99", "1,2345.00", "1,234.5,6", "abc", "1.000,000.00", "1,000", "1.999"} {
		if got, ok := money(in, 2); ok {
			t.Errorf("money(%q) = %d, want refused", in, got)
		}
	}
}

// TestTillMoneyInOtherCurrencies: yen have no decimals, dinars three; each is read as its people
// write it. Before, every currency was read in hundredths: "2500" yen became 250,000 yen.
func TestTillMoneyInOtherCurrencies(t *testing.T) {
	for _, c := range []struct {
		in     string
		digits int
		want   int64
	}{
		{"2500", 0, 2500}, {"2,500", 0, 2500}, {"2.500", 0, 2500}, {"1,234,567", 0, 1234567}, {"1.25", 3, 1250},
		{"1,25", 3, 1250}, {"12.5", 3, 12500}, {"1,234.567", 3, 1234567}, {"1.234,5", 3, 1234500}, {"7", 3, 7000},
		{"1.2345", 4, 12345},
	} {
		if got, ok := money(c.in, c.digits); !ok || got != c.want {
			t.Errorf("money(%q, %d) = %d, %v; want %d", c.in, c.digits, got, ok, c.want)
		}
	}
	for _, c := range []struct {
		in     string
		digits int
	}{
		{"12.99", 0}, {"2500.5", 0}, {"2,50", 0}, {"1.2345", 3}, {"1,2345", 3}, {"999999999999999999", 0}, {"9223372036854775807", 0},
		{"1.250", 3}, {"1,000", 3}, {"1.999", 4}, // a thousand, or a decimal amount? Not guessed.
	} {
		if got, ok := money(c.in, c.digits); ok {
			t.Errorf("money(%q, %d) = %d, want refused", c.in, c.digits, got)
		}
	}
}
