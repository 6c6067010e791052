//go:build race

package sim_test

// raceEnabled: the race detector slows the simulator ~15x, so TestSeeds runs fewer seeds; CI
// runs hundreds more without it through `loyalty sim`.
const raceEnabled = true
