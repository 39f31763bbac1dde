package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
	"github.com/spf13/cobra"
)

// daemon is a real relaisd in the test process: real store, real DICOM
// port, real control socket in its data folder.
type daemon struct {
	dir  string
	port int
	api  *control.Client
}

// startDaemon starts relaisd with the default configuration changed by
// change.
func startDaemon(t *testing.T, change func(*config.Config)) *daemon {
	t.Helper()
	d := &daemon{dir: t.TempDir(), port: peers.FreePort(t)}
	cfg := config.Default()
	cfg.Port = d.port
	if change != nil {
		change(&cfg)
	}
	if err := config.Save(filepath.Join(d.dir, "relais.json"), cfg); err != nil {
		t.Fatal(err)
	}
	a, err := appliance.New(appliance.Options{
		DataDir: d.dir,
		Listen:  fmt.Sprintf("127.0.0.1:%d", d.port),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relaisd stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("relaisd did not stop within 30 s")
		}
	})
	peers.WaitForPort(t, d.port)
	d.api = control.NewClient(appliance.SocketPath(d.dir))
	return d
}

// result is what one run of the command line did.
type result struct {
	code        int
	out, errOut string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.errOut)
}

// relais runs the command line in-process, against d unless args name
// another -data; stdin is not a terminal unless answer is given.
func (d *daemon) relais(args ...string) result { return d.relaisAnswering("", args...) }

// relaisAnswering runs it on a "terminal" where the user types answer.
func (d *daemon) relaisAnswering(answer string, args ...string) result {
	var out, errOut bytes.Buffer
	e := &env{in: strings.NewReader(answer), out: &out, errOut: &errOut, terminal: answer != ""}
	if !slices.Contains(args, "-data") {
		args = append([]string{"-data", d.dir}, args...)
	}
	code := run(context.Background(), e, args)
	return result{code, out.String(), errOut.String()}
}

// associate opens and releases an association to d as callingAE: nil when
// it is accepted.
func (d *daemon) associate(callingAE string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assoc, err := dimse.Dial(ctx, "127.0.0.1:"+strconv.Itoa(d.port), dimse.DialParams{CallingAE: callingAE, CalledAE: "RELAIS",
		Proposals: []dimse.Proposal{dimse.VerificationProposal()}})
	if err != nil {
		return err
	}
	defer assoc.Close()
	return assoc.Release(ctx)
}

// send stores n generated instances of one study as callingAE and returns
// the study's UID.
func (d *daemon) send(t *testing.T, callingAE string, n int, seed uint64) string {
	t.Helper()
	ctx := context.Background()
	assoc, err := dimse.Dial(ctx, "127.0.0.1:"+strconv.Itoa(d.port), dimse.DialParams{CallingAE: callingAE, CalledAE: "RELAIS",
		Proposals: []dimse.Proposal{{AbstractSyntax: dcmgen.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer assoc.Close()
	var study string
	for i := 1; i <= n; i++ {
		in := dcmgen.Instance{Rows: 16, Columns: 16, InstanceNumber: i, Seed: seed}.Defaults()
		study = in.StudyInstanceUID
		p := filepath.Join(t.TempDir(), "x.dcm")
		if _, err := in.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		m, rc, err := part10.OpenDataSet(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = assoc.Store(ctx, dimse.StoreParams{SOPClassUID: m.MediaStorageSOPClassUID,
			SOPInstanceUID: m.MediaStorageSOPInstanceUID, TransferSyntaxUID: m.TransferSyntaxUID}, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := assoc.Release(ctx); err != nil {
		t.Fatal(err)
	}
	return study
}

// snapshot is everything a command could change: the configuration file,
// what the store holds and its queue, the event log, the callers seen, and
// the files of the working folder.
func (d *daemon) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	cfg, err := os.ReadFile(filepath.Join(d.dir, "relais.json"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "config: %s\n", cfg)
	st, err := d.api.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "stored: %+v\n", st.Stored)
	for _, x := range st.Destinations {
		fmt.Fprintf(&b, "destination %s: %s, %d waiting, %d parked\n", x.Name, x.State, x.QueueDepth, x.Parked)
	}
	studies, err := d.api.Studies(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range studies {
		fmt.Fprintf(&b, "study %s: %d instances, %s, urgent %v\n", s.StudyInstanceUID, s.Instances, s.State, s.Urgent)
	}
	evs, err := d.api.Events(ctx, control.EventQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		fmt.Fprintf(&b, "event %s %s\n", e.Kind, e.Message)
	}
	callers, err := d.api.Callers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range callers {
		fmt.Fprintf(&b, "caller %s %s %d\n", c.AETitle, c.Address, c.Attempts)
	}
	files, _ := os.ReadDir(".")
	for _, f := range files {
		fmt.Fprintf(&b, "file %s\n", f.Name())
	}
	return b.String()
}

// everyCommand lists the command line's commands, subcommands included
// (the completion and help commands too), by their paths after "relais".
func everyCommand(t *testing.T) [][]string {
	t.Helper()
	root := newRoot(&env{in: strings.NewReader(""), out: io.Discard, errOut: io.Discard})
	root.SetArgs([]string{"--help"})
	root.SetOut(io.Discard)
	if err := root.Execute(); err != nil { // adds the help and completion commands
		t.Fatal(err)
	}
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			if sub.Hidden {
				continue
			}
			p := append(slices.Clone(path), sub.Name())
			paths = append(paths, p)
			walk(sub, p)
		}
	}
	walk(root, nil)
	return paths
}

// TestHelpNeverActs: every command asked for help (-h, --help, -help,
// before or after its arguments, with -y, through "relais help")
// prints its help, exits 0 and changes nothing: the configuration file,
// the store, its queue and event log, the callers and the working folder
// are the same after as before.
func TestHelpNeverActs(t *testing.T) {
	t.Chdir(t.TempDir()) // gen writes here when it runs
	d := startDaemon(t, func(c *config.Config) {
		c.Modalities = []config.Modality{{AETitle: "CT1", Address: "127.0.0.1"}}
		c.Destinations = []config.Destination{{Name: "center", AETitle: "PACS", Host: "127.0.0.1", Port: 9, Paused: true}}
	})
	study := d.send(t, "CT1", 2, 1)
	d.associate("UNKNOWN") // a caller to approve or deny
	other := filepath.Join(t.TempDir(), "other.json")
	os.WriteFile(other, []byte(`{"ae_title": "OTHER", "port": 11112, "max_associations": 2}`), 0o600)
	wg := filepath.Join(t.TempDir(), "center.conf")
	os.WriteFile(wg, []byte("[Interface]\nAddress = 10.8.0.2/24\n[Peer]\nPublicKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nAllowedIPs = 10.8.0.0/24\n"), 0o600)
	// Arguments that would make each command act.
	acting := map[string][]string{
		"approve": {"UNKNOWN", "127.0.0.1"}, "deny": {"-y", "CT1"}, "urgent": {study}, "resend": {study},
		"retry": {"center"}, "pause": {"center"}, "resume": {"center"}, "purge": {"-y"},
		"abandon": {"-y", "-dest", "center", "-reason", "test", "1.2.3"}, "echo": {"center"},
		"config set": {other}, "config validate": {other}, "tunnel import": {wg},
		"conflicts correct": {"1.2.3", "1", "-reason", "test"}, "conflicts discard": {"-y", "1.2.3", "1", "-reason", "test"},
		"gen": {"-ct", "1"}, "completion bash": {}, "console": {"-vt", "2"},
	}
	before := d.snapshot(t)
	commands := everyCommand(t)
	if len(commands) < 30 {
		t.Fatalf("only %d commands found: %v", len(commands), commands)
	}
	for _, path := range commands {
		name := strings.Join(path, " ")
		args := acting[name]
		for _, form := range [][]string{
			append(slices.Clone(path), "-h"),
			append(append(slices.Clone(path), args...), "--help"),
			append(append(slices.Clone(path), "-help"), args...),
			append([]string{"help"}, path...),
		} {
			r := d.relais(form...)
			if r.code != 0 || !strings.Contains(r.out, "Usage:") {
				t.Errorf("relais %s: want its help and exit 0, got %s", strings.Join(form, " "), r)
			}
			if after := d.snapshot(t); after != before {
				t.Fatalf("relais %s changed something:\nbefore:\n%s\nafter:\n%s", strings.Join(form, " "), before, after)
			}
		}
	}
}

// TestUnknownCommandsFlagsAndValuesAreNamed: a mistake on the command line
// exits 2 and names what is wrong; -data goes before or after the command.
func TestUnknownCommandsFlagsAndValuesAreNamed(t *testing.T) {
	t.Chdir(t.TempDir())
	d := startDaemon(t, nil)
	before := d.snapshot(t)
	for _, tc := range []struct {
		args []string
		say  string
	}{
		{[]string{"foo"}, `unknown command "foo" for "relais"`},
		{[]string{"stauts"}, `unknown command "stauts" for "relais"; did you mean status?`},
		{[]string{"config", "foo", "x.json"}, `unknown command "foo" for "relais config"`},
		{[]string{"tunnel", "nope"}, `unknown command "nope" for "relais tunnel"`},
		{[]string{"conflicts", "keep", "1.2.3"}, `unknown command "keep" for "relais conflicts"`},
		{[]string{"status", "-bogus"}, "unknown flag: --bogus"},
		{[]string{"approve", "--bogus", "CT9"}, "unknown flag: --bogus"},
		{[]string{"purge", "-x"}, "unknown shorthand flag: 'x' in -x"},
		{[]string{"events", "-kind", "store,foo"}, `unknown kind "foo" (known: association, store, reject, forward, retry, commit, purge, config, review, update)`},
		{[]string{"studies", "-n", "many"}, `invalid argument "many" for "-n, --limit" flag`},
		{[]string{"approve"}, "relais approve: missing AE"},
		{[]string{"status", "extra"}, `relais status: unexpected argument "extra"`},
		{[]string{"retry", "-instance", "1.2.3"}, "retry -instance needs -dest"},
		{[]string{"abandon", "1.2.3"}, "abandon needs -dest and -reason"},
		{[]string{"conflicts", "discard", "1.2.3", "first", "-reason", "x"}, `copy number "first" is not a number`},
		{[]string{"echo", "-aec", "PACS", "localhost"}, "relais echo: missing PORT"},
		{[]string{"echo", "localhost", "http"}, `echo: port "http" is not a number`},
		{[]string{}, "which command?"},
	} {
		r := d.relais(tc.args...)
		if r.code != exitUsage || !strings.Contains(r.errOut, tc.say) {
			t.Errorf("relais %q: want exit 2 saying %q, got %s", tc.args, tc.say, r)
		}
	}
	if after := d.snapshot(t); after != before {
		t.Fatalf("a refused command line changed something:\n%s\n%s", before, after)
	}
	// -data anywhere; without it, relais looks in ./relais-data, where no
	// relaisd runs.
	if r := d.relais("-data", "relais-data", "status"); r.code != exitFailed || !strings.Contains(r.errOut, "relaisd not answering") {
		t.Errorf("status without relaisd: %s", r)
	}
	for _, args := range [][]string{{"-data", d.dir, "status"}, {"status", "-data", d.dir}, {"status", "--data=" + d.dir}, {"events", "-n", "1", "-data", d.dir, "-kind", "config"}} {
		if r := d.relais(args...); r.code != 0 || r.out == "" {
			t.Errorf("relais %q: %s", args, r)
		}
	}
}

// TestDenyRevokesAModality: deny removes an approved modality from the
// configuration through the control API; its next association is refused.
// It asks first on a terminal, and refuses without one unless -y.
func TestDenyRevokesAModality(t *testing.T) {
	d := startDaemon(t, func(c *config.Config) {
		c.Modalities = []config.Modality{{AETitle: "CT1", Address: "127.0.0.1"}, {AETitle: "CT2"}, {AETitle: "MR1"}}
	})
	for _, ae := range []string{"CT1", "CT2", "MR1"} {
		if err := d.associate(ae); err != nil {
			t.Fatalf("%s before deny: %v", ae, err)
		}
	}
	if r := d.relais("deny", "CT1"); r.code != exitFailed || !strings.Contains(r.errOut, "not done: deny CT1 (any address): it may no longer send to the box. Add -y") {
		t.Fatalf("deny with no terminal and no -y: %s", r)
	}
	if r := d.relaisAnswering("n\n", "deny", "CT1"); r.code != exitFailed || !strings.Contains(r.out, "Do it? [y/N]") || !strings.Contains(r.errOut, "was not confirmed") {
		t.Fatalf("deny answered n: %s", r)
	}
	if err := d.associate("CT1"); err != nil {
		t.Fatalf("CT1 refused though deny was not confirmed: %v", err)
	}
	if r := d.relais("deny", "-y", "CT1"); r.code != 0 {
		t.Fatalf("deny -y CT1: %s", r)
	}
	if r := d.relaisAnswering("y\n", "deny", "CT2"); r.code != 0 {
		t.Fatalf("deny CT2 answered y: %s", r)
	}
	for _, ae := range []string{"CT1", "CT2"} {
		if err := d.associate(ae); err == nil {
			t.Errorf("%s still accepted after deny", ae)
		} else if !strings.Contains(err.Error(), "reject") {
			t.Errorf("%s: %v, want a rejection", ae, err)
		}
	}
	if err := d.associate("MR1"); err != nil {
		t.Errorf("MR1 refused, but only CT1 and CT2 were denied: %v", err)
	}
	cfg, err := d.api.Config(context.Background())
	if err != nil || len(cfg.Modalities) != 1 || cfg.Modalities[0].AETitle != "MR1" {
		t.Fatalf("modalities after deny: %+v %v", cfg.Modalities, err)
	}
	r := d.relais("events", "-kind", "config", "-n", "5")
	if !strings.Contains(r.out, "modality CT1 (any address) revoked: its next association is refused") {
		t.Errorf("no revocation event: %s", r)
	}
	if r := d.relais("deny", "-y", "CT9"); r.code != exitFailed || !strings.Contains(r.errOut, "CT9 (any address) is neither an allowed modality nor a caller seen") {
		t.Errorf("deny of a name never seen: %s", r)
	}
}

// TestEchoAnyAddressAsEchoscuDoes: relais echo -aec AE [-aet AE] HOST PORT
// echoes a real storescp from the box.
func TestEchoAnyAddressAsEchoscuDoes(t *testing.T) {
	peers.Require(t, "storescp")
	d := startDaemon(t, nil)
	port := peers.FreePort(t)
	peers.Start(t, "storescp", "-aet", "PACS", "-od", t.TempDir(), strconv.Itoa(port))
	peers.WaitForPort(t, port)
	for _, args := range [][]string{
		{"echo", "-aec", "PACS", "-aet", "RELAIS", "127.0.0.1", strconv.Itoa(port)},
		{"echo", "127.0.0.1", strconv.Itoa(port)}, // echoscu's default called AE, ANY-SCP
	} {
		r := d.relais(args...)
		if r.code != 0 || !strings.Contains(r.out, fmt.Sprintf("at 127.0.0.1:%d: success in", port)) {
			t.Errorf("relais %q: %s", args, r)
		}
	}
	if r := d.relais("echo", "-aec", "PACS", "127.0.0.1", strconv.Itoa(peers.FreePort(t))); r.code != exitFailed || !strings.Contains(r.errOut, "echo PACS at 127.0.0.1") {
		t.Errorf("echo where nothing listens: %s", r)
	}
	if r := d.relais("echo", "-aec", "A_CALLED_AE_TOO_LONG", "127.0.0.1", strconv.Itoa(port)); r.code != exitFailed || !strings.Contains(r.errOut, "at most 16") {
		t.Errorf("echo with a bad AE title: %s", r)
	}
}

// TestConfigValidateAndSetAreStrict: a configuration file with an unknown
// key, top level or nested, or a syntax error is refused by validate and
// set, saying where; a good one is applied and the event says what changed.
func TestConfigValidateAndSetAreStrict(t *testing.T) {
	d := startDaemon(t, func(c *config.Config) {
		c.Destinations = []config.Destination{{Name: "center", AETitle: "PACS", Host: "127.0.0.1", Port: 104, Paused: true}}
	})
	cfg, err := d.api.Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.MarshalIndent(cfg, "", "  ")
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o600)
		return p
	}
	typo := write("typo.json", strings.Replace(string(good), `"destinations"`, `"destinatons"`, 1))
	nested := write("nested.json", strings.Replace(string(good), `"port": 104`, `"prot": 104`, 1))
	syntax := write("syntax.json", strings.Replace(string(good), `"learning": false,`, `"learning": false,,`, 1))
	// Where the second comma is: its line, and its column (1-based).
	text, _ := os.ReadFile(syntax)
	at := bytes.Index(text, []byte(",,")) + 1
	line, col := bytes.Count(text[:at], []byte("\n"))+1, at-bytes.LastIndexByte(text[:at], '\n')
	before := d.snapshot(t)
	for _, tc := range []struct{ file, say string }{
		{typo, typo + ": invalid configuration: destinatons: unknown field; did you mean destinations?"},
		{nested, "destinations[0].prot: unknown field; did you mean port?"},
		{syntax, fmt.Sprintf("%s:%d:%d: invalid character ','", syntax, line, col)},
	} {
		for _, verb := range []string{"validate", "set"} {
			if r := d.relais("config", verb, tc.file); r.code != exitFailed || !strings.Contains(r.errOut, tc.say) {
				t.Errorf("config %s %s: want %q, got %s", verb, filepath.Base(tc.file), tc.say, r)
			}
		}
	}
	if after := d.snapshot(t); after != before {
		t.Fatalf("a refused configuration changed something:\n%s\n%s", before, after)
	}
	changed := write("changed.json", strings.Replace(string(good), `"port": 104`, `"port": 11112`, 1))
	if r := d.relais("config", "set", changed); r.code != 0 || !strings.Contains(r.out, "configuration saved and applied") {
		t.Fatalf("config set: %s", r)
	}
	if r := d.relais("events", "-kind", "config", "-n", "1"); !strings.Contains(r.out, "configuration changed: destinations[0].port: 104 → 11112") {
		t.Errorf("the change's event: %s", r)
	}
}

// TestDestructiveActionsNeedAYes: purge, abandon and conflicts discard
// refuse without a terminal unless -y, and change nothing.
func TestDestructiveActionsNeedAYes(t *testing.T) {
	d := startDaemon(t, nil)
	before := d.snapshot(t)
	for _, args := range [][]string{
		{"purge"},
		{"abandon", "-dest", "center", "-reason", "lost", "1.2.3"},
		{"conflicts", "discard", "1.2.3", "1", "-reason", "duplicate"},
	} {
		if r := d.relais(args...); r.code != exitFailed || !strings.Contains(r.errOut, "Add -y to do it without asking") {
			t.Errorf("relais %q: %s", args, r)
		}
	}
	if after := d.snapshot(t); after != before {
		t.Fatalf("a refused action changed something:\n%s\n%s", before, after)
	}
	if r := d.relais("purge", "-y"); r.code != 0 || !strings.Contains(r.out, "purged 0 stud(ies)") {
		t.Errorf("purge -y: %s", r)
	}
}

// TestGoStyleFlags: one dash or two; single letters and what follows --
// stay as they are.
func TestGoStyleFlags(t *testing.T) {
	got := goStyleArgs([]string{"-aec", "PACS", "-n", "5", "--dest", "c", "-reason=x y", "-1", "-y", "--", "-h", "-dest"})
	want := []string{"--aec", "PACS", "-n", "5", "--dest", "c", "--reason=x y", "-1", "-y", "--", "-h", "-dest"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestShellCompletion: relais completion SHELL writes the script; the
// script's questions are answered (the kinds of events, here).
func TestShellCompletion(t *testing.T) {
	d := &daemon{dir: t.TempDir()} // no relaisd needed
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if r := d.relais("completion", shell); r.code != 0 || !strings.Contains(r.out, "relais") {
			t.Errorf("completion %s: %s", shell, r)
		}
	}
	r := d.relais("__complete", "events", "-kind", "")
	if r.code != 0 || !strings.Contains(r.out, "association\nstore\n") {
		t.Errorf("completing -kind: %s", r)
	}
}
