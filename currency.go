package loyalty

// CurrencyDigits returns how many decimals currency's minor unit has (ISO 4217): 2 for most
// (1250 EUR is 12.50), 0 for the yen, the won and others without a minor unit (500 JPY is 500),
// 3 for the dinars and rials counted in thousandths (1250 KWD is 1.250), 4 for the Chilean and
// Uruguayan units of account. Amounts everywhere are integers of the minor unit; this is only how
// people write and read them (the till, the member's card, the dashboard).
func CurrencyDigits(currency string) int {
	switch currency {
	case "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF":
		return 0
	case "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND":
		return 3
	case "CLF", "UYW":
		return 4
	}
	return 2
}
