package appliance

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/forward"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/peers"
)

func TestProcessLogLeavesThePatientOut(t *testing.T) {
	msg := fmt.Sprintf("study 1.2.3 (%s) delivered to center: 3 instance(s)", forward.PatientToken)
	got, args := forProcessLog(store.KindForward, msg, map[string]string{"study": "1.2.3", forward.PatientAttr: "Doe^Jane"})
	if want := "study 1.2.3 delivered to center: 3 instance(s)"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if s := fmt.Sprint(args...); strings.Contains(s, "Doe") || !strings.Contains(s, "1.2.3") {
		t.Errorf("attributes %v", args)
	}
}

// syncBuffer is a process log that tests read while relaisd writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPatientNamesStayInTheEventLog: a study received and delivered: the
// event log names the patient, the process log (stdout/stderr, shown on
// gokrazy's status page) does not.
func TestPatientNamesStayInTheEventLog(t *testing.T) {
	logs := &syncBuffer{}
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Destinations = []config.Destination{{Name: "sink", AETitle: "SINK", Host: "127.0.0.1", Port: sinkSCP(t)}}
	b := startBox(t, cfg, boxOptions{log: logs})
	c := series(t, t.TempDir(), 2, 16, 904, nil)
	sendAs(t, b, "CT1", c.files)
	// The process log has an event a moment before the event log: wait for
	// the event log.
	var evs []store.Event
	peers.Eventually(t, 30*time.Second, "the study delivered and its session reported in the event log", func() (bool, string) {
		var err error
		evs, err = b.a.Store().Events(t.Context(), store.EventQuery{Limit: 100})
		if err != nil {
			return false, err.Error()
		}
		var delivered, received bool
		for _, e := range evs {
			delivered = delivered || strings.Contains(e.Message, "delivered to sink")
			received = received || strings.Contains(e.Message, "received 2 instance(s)")
		}
		return delivered && received, logs.String()
	})
	named := 0
	for _, e := range evs {
		if strings.Contains(e.Message, "(Test^Patient)") {
			named++
		}
		if strings.Contains(e.Message, forward.PatientToken) {
			t.Errorf("event log message with the placeholder: %q", e.Message)
		}
	}
	if named < 2 {
		t.Errorf("%d event(s) name the patient, want the reception and the delivery", named)
	}
	for _, secret := range []string{"Test^Patient", "RELAIS-TEST", forward.PatientToken} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the process log holds %q:\n%s", secret, logs)
		}
	}
}
