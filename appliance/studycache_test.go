package appliance

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// TestStudiesListFollowsEveryChange: the list the console polls is served
// again while nothing changed, and shows at the next call each thing that
// did: an instance received, a study falling quiet (time alone), a delivery
// by the forwarder, a destination removed from the configuration.
func TestStudiesListFollowsEveryChange(t *testing.T) {
	peers.Require(t, "storescu")
	o := peers.StartOrthanc(t, peers.OrthancOptions{})
	cfg := testConfig(peers.FreePort(t), o, false)
	cfg.Destinations[0].Paused = true
	b := startBox(t, cfg, boxOptions{})
	c := series(t, t.TempDir(), 3, 64, 501, nil)
	ctx := context.Background()
	study := func() control.Study {
		t.Helper()
		ss, err := b.client.Studies(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) != 1 || ss[0].StudyInstanceUID != dcmgen.UID("study", uint64(501)) {
			t.Fatalf("studies %+v, want the one sent", ss)
		}
		return ss[0]
	}
	at := func(s control.Study) control.StudyAtDest {
		t.Helper()
		if len(s.Destinations) != 1 {
			t.Fatalf("study at %+v, want center only", s.Destinations)
		}
		return s.Destinations[0]
	}
	waitState := func(want control.StudyState, within time.Duration) control.Study {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			s := study()
			if s.State == want {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("study %s after %v, want %s", s.State, within, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	if out, err := b.storescu("STORESCU", c.files[:2]...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	first := study()
	if first.Instances != 2 || first.State != control.StudyReceiving || at(first).Pending != 2 {
		t.Fatalf("after 2 instances: %+v at %+v", first, first.Destinations)
	}
	if again := study(); !reflect.DeepEqual(again, first) {
		t.Errorf("asked again with nothing changed: %+v, first %+v", again, first)
	}
	if out, err := b.storescu("STORESCU", c.files[2]); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	if s := study(); s.Instances != 3 || at(s).Pending != 3 {
		t.Errorf("after the third instance: %+v at %+v", s, s.Destinations)
	}
	waitState(control.StudyQueued, 30*time.Second)

	if err := b.client.Resume(ctx, "center"); err != nil {
		t.Fatal(err)
	}
	if s := waitState(control.StudyDelivered, 2*time.Minute); at(s).Delivered != 3 {
		t.Errorf("delivered: %+v", s.Destinations)
	}

	cfg.Destinations = nil
	if err := b.client.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if s := study(); len(s.Destinations) != 0 {
		t.Errorf("with no destination configured, the study still shows %+v", s.Destinations)
	}
}

// TestStudiesCacheServesOnlyTheSameState: a kept list is served for the
// same store generation, configuration snapshot and limit, and not once a
// study in it would no longer be receiving.
func TestStudiesCacheServesOnlyTheSameState(t *testing.T) {
	now := time.Now()
	cfg, other := &config.Config{}, &config.Config{}
	var c studiesCache
	if _, ok := c.get(0, cfg, 50, now); ok {
		t.Fatal("an empty cache served a list")
	}
	list := []control.Study{{StudyInstanceUID: "1", State: control.StudyQueued},
		{StudyInstanceUID: "2", State: control.StudyReceiving, LastReceived: now.Add(-4 * time.Second)}}
	c.put(7, cfg, 50, list)
	for _, x := range []struct {
		what  string
		gen   int64
		cfg   *config.Config
		limit int
		at    time.Time
		want  bool
	}{
		{"the same", 7, cfg, 50, now, true},
		{"a store changed since", 8, cfg, 50, now, false},
		{"another configuration", 7, other, 50, now, false},
		{"another limit", 7, cfg, 10, now, false},
		{"study 2 quiet for receivingQuiet", 7, cfg, 50, now.Add(receivingQuiet - 4*time.Second), false},
	} {
		got, ok := c.get(x.gen, x.cfg, x.limit, x.at)
		if ok != x.want || ok && !reflect.DeepEqual(got, list) {
			t.Errorf("%s: served %v (%v), want served %v", x.what, ok, got, x.want)
		}
	}
	list[0].StudyInstanceUID = "changed by the caller"
	if got, _ := c.get(7, cfg, 50, now); got[0].StudyInstanceUID != "1" {
		t.Errorf("the kept list follows the caller's slice: %v", got)
	}
}
