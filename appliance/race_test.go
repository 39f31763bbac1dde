//go:build race

package appliance

import "testing"

// raceEnabled: the race detector keeps shadow memory for every goroutine
// that ever ran, so resident memory says nothing about the box's own.
const raceEnabled = true

// skipUnderRace skips a test that moves a disk's worth of data through
// DICOM: under the race detector it takes ten times as long and proves
// nothing more; make test runs it on its own, without.
func skipUnderRace(t testing.TB) {
	t.Skip("moves a disk's worth of data: run without -race (make test does, on its own)")
}
