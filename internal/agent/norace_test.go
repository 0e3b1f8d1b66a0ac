//go:build !race

package agent

// raceEnabled: the long training tests run in make test's pass without the race detector.
const raceEnabled = false
