package hub

// MaxReplays is maxReplays, for the tests of package hub_test.
const MaxReplays = maxReplays
