package hub

// SetExportPage sets how many ledger entries a member export reads per transaction, and returns
// a function that puts the default back.
func SetExportPage(n int) (restore func()) {
	old := exportPage
	exportPage = n
	return func() { exportPage = old }
}
