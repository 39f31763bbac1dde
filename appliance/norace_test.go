//go:build !race

package appliance

import "testing"

const raceEnabled = false

func skipUnderRace(testing.TB) {}
