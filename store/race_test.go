//go:build race

package store

// raceEnabled: the race detector slows the store tenfold, so figures
// measured under it mean nothing.
const raceEnabled = true
