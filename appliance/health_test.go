package appliance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/peers"
)

// TestEveryForwardingFaultIsAnAlarmWithAnAction: each state a destination
// can be in that keeps images from the center raises the forwarding part of
// the health line and says what to do.
func TestEveryForwardingFaultIsAnAlarmWithAnAction(t *testing.T) {
	cfg := config.Default()
	cfg.Destinations = []config.Destination{{Name: "center"}}
	for _, c := range []struct {
		name  string
		d     control.DestinationStatus
		level string
		want  string
	}{
		{"unreachable", control.DestinationStatus{State: control.DestRetrying, FailingFor: "3h0m0s", Attempts: 41, LastError: "nothing answers"}, control.LevelAlarm, "center unreachable for 3h0m0s (attempt 41), next try at "},
		{"stalled", control.DestinationStatus{State: control.DestStalled, StalledFor: "2m5s", QueueDepth: 7}, control.LevelAlarm, "nothing has moved for 2m5s while 7 instance(s) wait"},
		{"parked", control.DestinationStatus{State: control.DestIdle, Parked: 2}, control.LevelAlarm, "2 instance(s) parked at center after repeated failures: they stay stored; see why, then retry or abandon them (relais parked)"},
		{"failing instance", control.DestinationStatus{State: control.DestSending, Failed: 1, LastError: "center refused it"}, control.LevelWarning, "1 instance(s) not accepted by center, retried on their own"},
		{"old study", control.DestinationStatus{State: control.DestSending, QueueDepth: 3, OldestWaiting: "31m0s", OldestWaitingSeconds: 31 * 60}, control.LevelAlarm, "the oldest study waiting for center has waited 31m0s (more than 30m0s)"},
		{"commitment", control.DestinationStatus{State: control.DestIdle, Commitment: control.Commitment{Error: "center refuses Storage Commitment: register this box", FailingSince: time.Now().Add(-time.Minute)}}, control.LevelAlarm, "Storage Commitment with center failing for 1m0s: center refuses"},
		{"paused", control.DestinationStatus{State: control.DestPaused, QueueDepth: 3}, control.LevelWarning, "center is paused: 3 instance(s) waiting"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.d.Name = "center"
			st := control.Status{Health: control.Health{Forwarding: control.LevelOK}}
			health{st: &st}.destination(&cfg, c.d)
			if st.Health.Forwarding != c.level || len(st.Alarms) != 1 || !strings.Contains(st.Alarms[0].Message, c.want) {
				t.Fatalf("health %q, alarms %+v; want %s with %q", st.Health.Forwarding, st.Alarms, c.level, c.want)
			}
		})
	}
	st := control.Status{Health: control.Health{Forwarding: control.LevelOK}}
	health{st: &st}.destination(&cfg, control.DestinationStatus{Name: "center", State: control.DestSending, QueueDepth: 3, OldestWaitingSeconds: 60})
	if len(st.Alarms) != 0 || st.Health.Forwarding != control.LevelOK {
		t.Fatalf("a healthy destination raised %+v", st.Alarms)
	}
}

func TestNoTunnelWarningWithoutItsReason(t *testing.T) {
	cfg := config.Default()
	cfg.Destinations = []config.Destination{{Name: "center"}}
	st := control.Status{Health: control.Health{Tunnel: control.LevelOK}, Tunnel: control.Tunnel{State: "not configured"}}
	health{st: &st}.tunnel(&cfg, nil)
	if st.Health.Tunnel != control.LevelWarning || len(st.Alarms) != 1 || !strings.Contains(st.Alarms[0].Message, "no tunnel") {
		t.Fatalf("health %q, alarms %+v", st.Health.Tunnel, st.Alarms)
	}
}

// TestSelfEchoStuckOrRefusedIsRed: an answer from long ago says nothing of
// the service now, and every slot in use refuses the modalities too: both
// turn receiving red, each with its own action.
func TestSelfEchoStuckOrRefusedIsRed(t *testing.T) {
	now := time.Now()
	every := 45 * time.Second
	for _, c := range []struct {
		name string
		r    probeResult
		want string // in the alarm; "" for none
	}{
		{"answered just now", probeResult{at: now.Add(-time.Second), answered: now.Add(-time.Second)}, ""},
		{"last answer 10 min ago, no probe since", probeResult{at: now.Add(-10 * time.Minute), answered: now.Add(-10 * time.Minute)}, "has not been able to echo its own DICOM service"},
		{"every slot in use", probeResult{at: now, since: now, err: dimse.RejectLocalLimit}, "every association slot is in use"},
		{"no answer", probeResult{at: now, since: now, err: errors.New("context deadline exceeded")}, "restart relaisd"},
	} {
		st := control.Status{}
		health{&st}.probe(dimse.ListenerHealth{}, c.r, every, now)
		a, ok := alarmWith(st, c.want)
		switch {
		case c.want == "" && len(st.Alarms) > 0:
			t.Errorf("%s: alarms %+v, want none", c.name, st.Alarms)
		case c.want != "" && (!ok || a.Level != control.LevelAlarm || st.Health.Receiving != control.LevelAlarm):
			t.Errorf("%s: receiving %q, alarms %+v, want a red one saying %q", c.name, st.Health.Receiving, st.Alarms, c.want)
		}
	}
}

// TestDamagedCopiesAlarmNamesTheStudiesAndWhoToAsk: damaged stored copies
// raise the disk part to an alarm that counts them, names their studies and
// senders, and says to send them again (one study: its sender by name);
// parked instances then say a retry cannot send the damaged ones.
func TestDamagedCopiesAlarmNamesTheStudiesAndWhoToAsk(t *testing.T) {
	dmg := func(study, ae string) store.Damage {
		return store.Damage{SOPInstanceUID: study + ".1", StudyInstanceUID: study, CallingAE: ae}
	}
	for _, c := range []struct {
		name string
		ds   []store.Damage
		n    int
		err  error
		want []string
	}{
		{"one", []store.Damage{dmg("1.2.3", "CT1")}, 1, nil,
			[]string{"1 stored copy is damaged or missing", "study 1.2.3 from CT1 (1 of its instances)", "ask CT1 to send study 1.2.3 again", "have the disk checked"}},
		{"one study", []store.Damage{dmg("1.2.3", "CT1"), dmg("1.2.3", "CT1")}, 2, nil,
			[]string{"2 stored copies are damaged", "(2 of its instances)", "ask CT1 to send study 1.2.3 again"}},
		{"two studies", []store.Damage{dmg("1.2.3", "CT1"), dmg("4.5.6", "MR1")}, 2, nil,
			[]string{"study 1.2.3 from CT1 (1 of its instances), study 4.5.6 from MR1", "ask each modality to send its study again"}},
		{"more than listed", []store.Damage{dmg("1.2.3", "CT1")}, 80, nil,
			[]string{"80 stored copies", "study 1.2.3 from CT1", "and more (relais parked)", "ask each modality"}},
		{"list unreadable", nil, 4, errors.New("disk I/O error"), []string{"4 stored copies are damaged", "disk I/O error"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := control.Status{Health: control.Health{Disk: control.LevelOK}}
			health{st: &st}.damaged(c.ds, c.n, c.err)
			if _, ok := alarmWith(st, c.want...); !ok || st.Health.Disk != control.LevelAlarm || len(st.Alarms) != 1 {
				t.Fatalf("disk %q, alarms %+v; want one alarm with %q", st.Health.Disk, st.Alarms, c.want)
			}
		})
	}
	cfg := config.Default()
	st := control.Status{Stored: control.Stored{Damaged: 1}}
	health{st: &st}.destination(&cfg, control.DestinationStatus{Name: "center", Parked: 2})
	if _, ok := alarmWith(st, "2 instance(s) parked at center", "damaged copies among them wait to be sent again"); !ok {
		t.Fatalf("parked alarm %+v", st.Alarms)
	}
}

// TestStatusListsAlarmsBeforeWarnings: a paused destination (a warning)
// is looked at before an unreachable one (an alarm), and the missing tunnel
// (a warning) after both; the status lists the alarm first, then the
// warnings in the order they were found, so a console's first screen shows
// the most urgent.
func TestStatusListsAlarmsBeforeWarnings(t *testing.T) {
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Destinations = []config.Destination{
		{Name: "paused", AETitle: "PACS", Host: "127.0.0.1", Port: peers.FreePort(t), Paused: true},
		{Name: "down", AETitle: "PACS", Host: "127.0.0.1", Port: peers.FreePort(t)}, // nothing listens: refused
	}
	b := startBox(t, cfg, boxOptions{})
	c := series(t, t.TempDir(), 1, 16, 1, nil)
	if out, err := b.storescu("CT1", c.files...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	var st control.Status
	peers.Eventually(t, 30*time.Second, "the unreachable destination's alarm", func() (bool, string) {
		var err error
		st, err = b.client.Status(context.Background())
		_, ok := alarmWith(st, "down unreachable")
		return err == nil && ok, fmt.Sprintf("%+v %v", st.Alarms, err)
	})
	var got []string
	for _, a := range st.Alarms {
		got = append(got, a.Level+": "+strings.SplitN(a.Message, ":", 2)[0])
	}
	want := []string{"alarm: down unreachable for", "warning: paused is paused", "warning: no tunnel"}
	if len(got) != len(want) {
		t.Fatalf("alarms %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("alarms %q, want %q", got, want)
		}
	}
}
