package forward

import (
	"fmt"
	"strings"
	"testing"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
)

// TestDamagedReasonSaysWhatAndWhoToAsk: a missing copy is told from a
// changed one, the sender and the study are named in the sentence, and the
// store's finding is the cause apart.
func TestDamagedReasonSaysWhatAndWhoToAsk(t *testing.T) {
	r := store.Instance{SOPInstanceUID: "1.2.3.4", StudyInstanceUID: "1.2.3", CallingAE: "CT1"}
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("read 1.2.3.4 (copy 7): %w", store.ErrMissing), "is missing (its file is gone)"},
		{fmt.Errorf("read 1.2.3.4 (copy 7): %w: 10 bytes, want 20", store.ErrCorrupt), "is damaged (its bytes are not those received)"},
	} {
		sentence, cause := control.SplitCause(DamagedReason(r, c.err))
		if !strings.Contains(sentence, c.want) || !strings.Contains(sentence, "ask CT1 to send study 1.2.3 again") || cause != c.err.Error() {
			t.Errorf("%v: sentence %q, cause %q", c.err, sentence, cause)
		}
	}
	if got := DamagedReason(store.Instance{StudyInstanceUID: "1.2.3"}, store.ErrCorrupt); !strings.Contains(got, "ask the modality to send study 1.2.3 again") {
		t.Errorf("no sender: %q", got)
	}
}
