//go:build race

package main

// raceEnabled: the race detector's runtime gives goroutines larger stacks and the heap more to
// hold, so memory figures measured under it are not the hub's.
const raceEnabled = true
