//go:build race

package e2e_test

// raceEnabled: the race detector slows SQLite-heavy tests ~10x; TestAgentAndHubComputeTheSame
// then runs fewer orders, and CI runs it at full size without -race as well.
const raceEnabled = true
