package appliance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/peers"
)

// selfEchoAlarm finds the alarm of the box's own echo not answered.
func selfEchoAlarm(st control.Status) (string, bool) {
	a, ok := alarmWith(st, "does not answer an echo from the box itself")
	return a.Message, ok
}

// holdAssociation opens a Verification association as ae from the address
// src and keeps it silent; closing it is the caller's.
func holdAssociation(ctx context.Context, addr, ae, src string) (*dimse.Association, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return dimse.Dial(ctx, addr, dimse.DialParams{CallingAE: ae, CalledAE: "RELAIS", Dial: d.DialContext,
		Proposals: []dimse.Proposal{dimse.VerificationProposal()}})
}

// TestReceivingIsRedWhileTheServiceDoesNotAnswerItsOwnEcho: every
// association slot is taken by silent associations (max_associations 4,
// from two AE titles on two addresses, each within its share). The
// listener still accepts, but no association is served: a modality is
// refused, and so is the box's own C-ECHO, and the health line says "not
// receiving" with the action. Once they close it is green again. The probe
// counts as no reception, its failures are one event (not one per probe),
// and its associations are not in the process log at info level.
func TestReceivingIsRedWhileTheServiceDoesNotAnswerItsOwnEcho(t *testing.T) {
	const every = 2 * time.Second
	logs := &syncBuffer{}
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.MaxAssociations = 4
	b := startBox(t, cfg, boxOptions{log: logs, probe: every})
	ctx := t.Context()
	status := func() control.Status {
		t.Helper()
		st, err := b.client.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	peers.Eventually(t, 10*time.Second, "the box's own echo answered", func() (bool, string) {
		st := status()
		return !st.Receiving.SelfEchoAt.IsZero() && st.Health.Receiving == control.LevelOK, fmt.Sprintf("%+v %+v", st.Receiving, st.Alarms)
	})

	var held []*dimse.Association
	defer func() {
		for _, as := range held {
			as.Abort()
		}
	}()
	for _, c := range []struct{ ae, src string }{{"CT1", "127.0.0.1"}, {"CT1", "127.0.0.1"}, {"CT_URG", "127.0.0.2"}, {"CT_URG", "127.0.0.2"}} {
		as, err := holdAssociation(ctx, b.addr(), c.ae, c.src)
		if err != nil {
			t.Fatalf("association %d (%s from %s): %v", len(held)+1, c.ae, c.src, err)
		}
		held = append(held, as)
	}
	filled := time.Now()
	as, err := holdAssociation(ctx, b.addr(), "STORESCU", "127.0.0.1")
	var rj *dimse.Rejection
	if !errors.As(err, &rj) || *rj != *dimse.RejectLocalLimit {
		if as != nil {
			as.Abort()
		}
		t.Fatalf("a modality with every slot taken: %v, want %v", err, dimse.RejectLocalLimit)
	}

	var alarm string
	peers.Eventually(t, 30*time.Second, "receiving red: the box's own echo not answered", func() (bool, string) {
		st := status()
		msg, ok := selfEchoAlarm(st)
		alarm = msg
		return ok && st.Health.Receiving == control.LevelAlarm, fmt.Sprintf("%s %+v", st.Health.Receiving, st.Alarms)
	})
	t.Logf("red %v after the slots filled: %q", time.Since(filled).Round(time.Millisecond), alarm)
	if !strings.Contains(alarm, "restart relaisd") {
		t.Errorf("the alarm says no action: %q", alarm)
	}
	// Some more probes fail (every status asked meanwhile may ask one too).
	for end := time.Now().Add(2 * every); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if st := status(); st.Health.Receiving != control.LevelAlarm {
			t.Fatalf("receiving %s while every slot is still taken: %+v", st.Health.Receiving, st.Alarms)
		}
	}

	for _, as := range held {
		as.Close()
	}
	held = nil
	closed := time.Now()
	peers.Eventually(t, 30*time.Second, "receiving green again", func() (bool, string) {
		st := status()
		_, ok := selfEchoAlarm(st)
		return !ok && st.Health.Receiving == control.LevelOK, fmt.Sprintf("%s %+v", st.Health.Receiving, st.Alarms)
	})
	t.Logf("green %v after the associations closed", time.Since(closed).Round(time.Millisecond))

	st := status()
	if st.Receiving.Instances != 0 || st.Receiving.LastSender != "" {
		t.Errorf("the probe counted as a reception: %+v", st.Receiving)
	}
	evs, err := b.client.Events(ctx, control.EventQuery{Kinds: []string{string(store.KindAssociation)}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var lost, back int
	for _, e := range evs {
		switch {
		case strings.Contains(e.Message, "does not answer an echo from the box itself"):
			lost++
		case strings.Contains(e.Message, "answers an echo from the box itself again"):
			back++
		}
	}
	if lost != 1 || back != 1 {
		t.Errorf("%d events of the echo not answered and %d of it answered again, want one each: %+v", lost, back, evs)
	}
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "level=INFO") && strings.Contains(l, "calling=RELAIS") {
			t.Errorf("the box's own association in the process log at info level: %s", l)
		}
	}
}
