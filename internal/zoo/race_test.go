//go:build race

package zoo

// raceEnabled is set when tests run under the race detector, where training is many times slower.
const raceEnabled = true
