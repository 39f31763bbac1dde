//go:build race

package appliance

// raceEnabled: the race detector keeps shadow memory for every goroutine
// that ever ran, so resident memory says nothing about the box's own.
const raceEnabled = true
