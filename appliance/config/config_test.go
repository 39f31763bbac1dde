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

// TestUnknownKeysAreRefusedWithThePathAndASuggestion: a typo in a key is an
// error, never a setting silently dropped (a misspelled "destinations"
// would remove every destination).
func TestUnknownKeysAreRefusedWithThePathAndASuggestion(t *testing.T) {
	for _, tc := range []struct {
		json string
		want []FieldError
	}{
		{`{"destinatons": []}`, []FieldError{{"destinatons", "unknown field; did you mean destinations?"}}},
		{`{"destinations": [{"name": "center", "prot": 104}]}`, []FieldError{{"destinations[0].prot", "unknown field; did you mean port?"}}},
		{`{"destinations": [{}, {"only": {"modality": ["CT"]}}]}`, []FieldError{{"destinations[1].only.modality", "unknown field; did you mean modalities?"}}},
		{`{"tunnel": {"mode": "netstack", "presharedkey": "x"}}`, []FieldError{{"tunnel.presharedkey",
			"unknown field; known here: mode, address, listen_port, peer_public_key, endpoint, allowed_ips, keepalive_seconds"}}},
		{`{"port": "104", "learning": 1, "modalities": {}}`, []FieldError{
			{"learning", "want true or false, got the number 1"},
			{"modalities", "want a list […], got an object"},
			{"port", `want a whole number, got the string "104"`}}},
		{`{"max_associations": 1.5}`, []FieldError{{"max_associations", "want a whole number, got the number 1.5"}}},
		{`{"Port": 104, "AE_TITLE": "X"}`, nil}, // encoding/json ignores case: so do we
	} {
		c := Default()
		err := Decode([]byte(tc.json), &c)
		var ve ValidationError
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v", tc.json, err)
		case tc.want != nil && !errors.As(err, &ve):
			t.Errorf("%s: got %v, want a ValidationError", tc.json, err)
		case tc.want != nil && !reflect.DeepEqual([]FieldError(ve), tc.want):
			t.Errorf("%s:\n got  %q\n want %q", tc.json, ve, tc.want)
		}
	}
	// Load refuses such a file, saying which file.
	p := filepath.Join(t.TempDir(), "relais.json")
	os.WriteFile(p, []byte(`{"ae_title": "RELAIS", "port": 11112, "max_associations": 4, "destinatons": []}`), 0o600)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p+": invalid configuration: destinatons: unknown field; did you mean destinations?") {
		t.Fatalf("Load: %v", err)
	}
}

// TestSyntaxErrorsSayLineAndColumn: the technician edits the file in vi and
// must find the bad comma.
func TestSyntaxErrorsSayLineAndColumn(t *testing.T) {
	for _, tc := range []struct {
		json      string
		line, col int
		msg       string
	}{
		{"{\n  \"ae_title\": \"X\",\n}\n", 3, 1, "invalid character '}' looking for beginning of object key string"},
		{"{\n  \"port\": 104\n  \"learning\": true\n}", 3, 3, "after object key:value pair"},
		{"{\n  \"port\": 104,\n", 3, 1, "ends too early"},
		{"", 1, 1, "empty"},
		{"{}\n{}", 2, 1, "more after"},
	} {
		c := Default()
		err := Decode([]byte(tc.json), &c)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != tc.line || se.Column != tc.col || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("%q: got %v, want %d:%d: …%s…", tc.json, err, tc.line, tc.col, tc.msg)
		}
	}
	p := filepath.Join(t.TempDir(), "relais.json")
	os.WriteFile(p, []byte("{\n  \"ae_title\": \"X\",\n}\n"), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p+":3:1: invalid character") {
		t.Fatalf("Load: %v", err)
	}
}

// TestDiffSaysWhatChangedAndMasksSecrets: the "configuration changed"
// event says what changed, never a secret's value.
func TestDiffSaysWhatChangedAndMasksSecrets(t *testing.T) {
	old := Default()
	old.Destinations = []Destination{{Name: "center", AETitle: "PACS", Host: "10.8.0.1", Port: 104}}
	new := old
	new.Destinations = []Destination{{Name: "center", AETitle: "PACS", Host: "10.8.0.1", Port: 11112},
		{Name: "backup", AETitle: "BACKUP", Host: "10.8.0.9", Port: 104, Commitment: true}}
	new.Learning = true
	new.AETitle = "BOX"
	new.Tunnel.AllowedIPs = []string{"10.8.0.0/24"}
	var got []string
	for _, c := range Diff(old, new) {
		got = append(got, c.String())
	}
	want := []string{
		`ae_title: "RELAIS" → "BOX"`,
		"learning: false → true",
		"destinations[0].port: 104 → 11112",
		`destinations[1]: added {name "backup", ae_title "BACKUP", host "10.8.0.9", port 104, commitment true}`,
		`tunnel.allowed_ips[0]: added "10.8.0.0/24"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n %q\nwant\n %q", got, want)
	}
	if cs := Diff(old, old); len(cs) != 0 {
		t.Errorf("no change gave %v", cs)
	}

	// Secrets by name, wherever they are: the value never shows.
	type peer struct {
		PresharedKey string `json:"preshared_key"`
		Endpoint     string `json:"endpoint"`
	}
	type withSecrets struct {
		Password string `json:"http_password"`
		Peers    []peer `json:"peers"`
	}
	a := withSecrets{Password: "hunter2", Peers: []peer{{PresharedKey: "AAAA", Endpoint: "a:1"}}}
	b := withSecrets{Password: "hunter3", Peers: []peer{{PresharedKey: "BBBB", Endpoint: "a:1"}, {PresharedKey: "CCCC", Endpoint: "b:2"}}}
	var cs []Change
	diffValues("", reflect.ValueOf(a), reflect.ValueOf(b), false, &cs)
	got = got[:0]
	for _, c := range cs {
		got = append(got, c.String())
	}
	want = []string{"http_password: (secret) → (secret)", "peers[0].preshared_key: (secret) → (secret)",
		`peers[1]: added {preshared_key (secret), endpoint "b:2"}`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("secrets: got\n %q\nwant\n %q", got, want)
	}
}
