package control

import (
	"errors"
	"testing"
)

// TestSplitCauseKeepsBracketsInsideTheCause: WithCause's text comes apart
// again, an IPv6 address in the cause included; a text without a cause is
// left whole.
func TestSplitCauseKeepsBracketsInsideTheCause(t *testing.T) {
	for _, c := range []struct{ text, sentence, cause string }{
		{WithCause("nothing answers at PACS at [::1]:104", errors.New("dial tcp [::1]:104: connect: connection refused")),
			"nothing answers at PACS at [::1]:104", "dial tcp [::1]:104: connect: connection refused"},
		{WithCause("center is busy", nil), "center is busy", ""},
		{"dial tcp [::1]:104", "dial tcp [::1]:104", ""},
		{"x]", "x]", ""},
	} {
		if s, cause := SplitCause(c.text); s != c.sentence || cause != c.cause {
			t.Errorf("SplitCause(%q) = %q, %q; want %q, %q", c.text, s, cause, c.sentence, c.cause)
		}
	}
}
