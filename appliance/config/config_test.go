package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
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
