package appliance

import (
	"fmt"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/testdata/peers"
)

// TestCountersSinceBootStayAcrossAConfigurationChange: what the dashboard
// shows as received and sent since boot goes on counting when a change of
// the configuration replaces the destination's forwarder.
func TestCountersSinceBootStayAcrossAConfigurationChange(t *testing.T) {
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Destinations = []config.Destination{{Name: "sink", AETitle: "SINK", Host: "127.0.0.1", Port: sinkSCP(t)}}
	b := startBox(t, cfg, boxOptions{})
	counts := func(received, sent int64) control.Status {
		t.Helper()
		var st control.Status
		peers.Eventually(t, 30*time.Second, fmt.Sprintf("%d received, %d sent", received, sent), func() (bool, string) {
			st, _ = b.client.Status(t.Context())
			if len(st.Destinations) != 1 {
				return false, fmt.Sprintf("%+v", st.Destinations)
			}
			d := st.Destinations[0]
			return st.Receiving.Instances == received && d.SentSince == sent,
				fmt.Sprintf("received %d, sent %d", st.Receiving.Instances, d.SentSince)
		})
		return st
	}
	c := series(t, t.TempDir(), 3, 16, 911, nil)
	sendAs(t, b, "CT1", c.files[:2])
	before := counts(2, 2)

	// New settings for the destination (its forwarder is replaced) and
	// for the box.
	cfg.Destinations[0].ParkAfterAttempts = 7
	cfg.Modalities = append(cfg.Modalities, config.Modality{AETitle: "MR1", Address: "127.0.0.1"})
	if err := b.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	after := counts(2, 2)
	if a, b := after.Destinations[0], before.Destinations[0]; a.BytesSent != b.BytesSent || after.Receiving.Bytes != before.Receiving.Bytes {
		t.Errorf("bytes changed with the configuration: sent %d → %d, received %d → %d", b.BytesSent, a.BytesSent, before.Receiving.Bytes, after.Receiving.Bytes)
	}
	sendAs(t, b, "CT1", c.files[2:])
	counts(3, 3)
}

// refuse is a PACS's answer to every C-STORE: out of resources.
type refuse struct{ discard }

func (refuse) Close() dimse.Status { return dimse.StatusOutOfResources }

// TestRemovedDestinationDoesNotFailAStudy: a study delivered to center and
// failing at a second destination is "failed"; once that destination is
// removed, the study shows delivered, as center has it all.
func TestRemovedDestinationDoesNotFailAStudy(t *testing.T) {
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Destinations = []config.Destination{
		{Name: "center", AETitle: "SINK", Host: "127.0.0.1", Port: sinkSCP(t)},
		{Name: "backup", AETitle: "SINK", Host: "127.0.0.1", Port: storeSCP(t, refuse{})},
	}
	b := startBox(t, cfg, boxOptions{})
	c := series(t, t.TempDir(), 2, 16, 912, nil)
	sendAs(t, b, "CT1", c.files)
	state := func(want control.StudyState) {
		t.Helper()
		peers.Eventually(t, 60*time.Second, "study "+string(want), func() (bool, string) {
			ss, err := b.client.Studies(t.Context(), 10)
			if err != nil || len(ss) != 1 {
				return false, fmt.Sprint(ss, err)
			}
			return ss[0].State == want, fmt.Sprintf("%s %+v", ss[0].State, ss[0].Destinations)
		})
	}
	state(control.StudyFailed)

	cfg.Destinations = cfg.Destinations[:1]
	if err := b.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	state(control.StudyDelivered)
	ss, err := b.client.Studies(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss[0].Destinations) != 1 || ss[0].Destinations[0].Name != "center" || ss[0].Destinations[0].Delivered != 2 {
		t.Errorf("the study's destinations: %+v, want center alone with 2 delivered", ss[0].Destinations)
	}
}
