package control

import (
	"strings"
	"testing"
	"time"
)

func TestUpdateSummarySaysWhatCameOfTheLastUpdate(t *testing.T) {
	at := time.Date(2026, 12, 1, 3, 12, 0, 0, time.Local)
	for _, c := range []struct {
		u     Update
		level string
		want  []string
	}{
		{Update{State: UpdateGood, Image: "01230c1af3", At: at}, LevelOK, []string{"01230c1af3", "good", "2026-12-01 03:12"}},
		{Update{State: UpdateRolledBack, Image: "4e57466f8c", Running: "01230c1af3", Reason: "relaisd crashed 4 times in 7.5 s", At: at},
			LevelAlarm, []string{"4e57466f8c rolled back", "relaisd crashed 4 times", "01230c1af3 runs"}},
		{Update{State: UpdateUnhealthy, Image: "4e57466f8c", Message: "scp: no answer", At: at}, LevelWarning, []string{"unhealthy", "scp: no answer"}},
	} {
		level, text := c.u.Summary()
		if level != c.level {
			t.Errorf("%s: level %s, want %s", c.u.State, level, c.level)
		}
		for _, w := range c.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: %q does not say %q", c.u.State, text, w)
			}
		}
	}
}
