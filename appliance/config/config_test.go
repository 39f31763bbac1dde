package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultIsValidAndHoldsStudies(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.AETitle != "RELAIS" || c.Port != 11112 || len(c.Destinations) != 0 {
		t.Fatalf("default %+v", c)
	}
}

func TestValidateNamesEveryBadField(t *testing.T) {
	c := Default()
	c.AETitle = ""
	c.Port = 70000
	c.Modalities = []Modality{{AETitle: "CT1", Address: "10.1.2.300"}}
	c.Destinations = []Destination{{Name: "a", AETitle: "PACS", Host: "pacs", Port: 104}, {Name: "a", AETitle: "X\\Y", Host: "", Port: 104}}
	c.Urgent = []UrgentRule{{Element: "NoSuchKeyword", Value: "STAT"}, {}}
	c.Retention.LowWatermarkPercent = 90
	err := c.Validate()
	var ve ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v", err)
	}
	want := []string{"ae_title", "port", "modalities[0].address", "destinations[1].name", "destinations[1].ae_title",
		"destinations[1].host", "urgent_rules[0].element", "urgent_rules[1]", "retention.low_watermark_percent"}
	if len(ve) != len(want) {
		t.Fatalf("got %d errors, want %d: %v", len(ve), len(want), ve)
	}
	for i, f := range want {
		if ve[i].Field != f || ve[i].Msg == "" {
			t.Errorf("error %d: %+v, want field %s", i, ve[i], f)
		}
	}
}

func TestSaveIsAtomicAndLoadRoundTrips(t *testing.T) {
	p := filepath.Join(t.TempDir(), "relais.json")
	c := Default()
	c.Destinations = []Destination{{Name: "center", AETitle: "PACS", Host: "10.8.0.1", Port: 104, Commitment: true}}
	if err := Save(p, c); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	got, err := Load(p)
	if err != nil || !reflect.DeepEqual(got.Destinations, c.Destinations) {
		t.Fatalf("%v %+v", err, got)
	}
	bad := Default()
	bad.Port = 0
	if err := Save(p, bad); err == nil {
		t.Fatal("an invalid configuration was saved")
	}
	if got, _ := Load(p); got.Port != 11112 {
		t.Fatal("a refused save changed the file")
	}
}

func TestMissingFileGivesDefaultsAndBrokenFileSaysWhere(t *testing.T) {
	dir := t.TempDir()
	if c, err := Load(filepath.Join(dir, "none.json")); err != nil || c.AETitle != "RELAIS" {
		t.Fatalf("%v %+v", err, c)
	}
	p := filepath.Join(dir, "broken.json")
	os.WriteFile(p, []byte(`{"ae_title": "X",`), 0o600)
	if _, err := Load(p); err == nil {
		t.Fatal("broken JSON accepted")
	}
}

func TestWarningsNameDestinationsOutsideTheTunnel(t *testing.T) {
	c := Default()
	c.Tunnel = Tunnel{Mode: "netstack", Address: "10.8.0.2/24", PeerPublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		AllowedIPs: []string{"10.8.0.0/24"}}
	c.Destinations = []Destination{{Name: "center", AETitle: "PACS", Host: "10.8.0.1", Port: 104},
		{Name: "lan", AETitle: "LAN", Host: "192.168.1.5", Port: 104},
		{Name: "named", AETitle: "NAMED", Host: "pacs.example", Port: 104},
		{Name: "mapped", AETitle: "MAPPED", Host: "::ffff:10.8.0.3", Port: 104}}
	if err := c.Validate(); err != nil {
		t.Fatalf("a warning is not an error: %v", err)
	}
	ws := c.Warnings()
	if len(ws) != 1 || ws[0].Field != "destinations[1].host" || !strings.Contains(ws[0].Msg, "10.8.0.0/24") {
		t.Fatalf("warnings %v", ws)
	}
	for _, mode := range []string{"off", "auto", ""} {
		c.Tunnel.Mode = mode
		if got := len(c.Warnings()); (mode == "off") != (got == 0) {
			t.Errorf("mode %q: %d warning(s)", mode, got)
		}
	}
	c.Tunnel = Tunnel{}
	if ws := c.Warnings(); ws != nil {
		t.Errorf("no tunnel: %v", ws)
	}
}

func TestAnInstanceNeverGoesBackToTheAEThatSentIt(t *testing.T) {
	center := Destination{Name: "center", AETitle: "CENTER"}
	local := Destination{Name: "local", AETitle: "LOCALPACS", Only: Match{CallingAETitles: []string{"CENTER"}}}
	loose := Destination{Name: "loose", AETitle: "CENTER", Only: Match{CallingAETitles: []string{"CENTER"}}}
	for _, c := range []struct {
		d          Destination
		caller, md string
		want       bool
	}{
		{center, "CT1", "CT", true},       // images go to the center
		{center, "CENTER", "SR", false},   // its results never go back to it
		{local, "CENTER", "SR", true},     // they go to the local PACS
		{local, "CT1", "CT", false},       // which takes only the center's
		{loose, "CENTER", "SR", false},    // whatever a filter says
		{local, "LOCALPACS", "SR", false}, // nor to the local PACS what it sent
	} {
		if got := c.d.Takes(c.caller, c.md); got != c.want {
			t.Errorf("%s takes from %s: %v, want %v", c.d.Name, c.caller, got, c.want)
		}
	}
}
