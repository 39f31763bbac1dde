package image

import (
	"bufio"
	"go/build"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/relais/relais/appliance/consolekeys"
	"github.com/relais/relais/testdata/peers"
)

// moduleRoot is the checkout: the tests run in image/.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func loadBoxes(t *testing.T) map[string]*Instance {
	t.Helper()
	out := map[string]*Instance{}
	for name := range Boxes {
		in, err := Load(filepath.Join(name, "config.json"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = in
	}
	return out
}

func TestInstanceConfigsParseAndHaveWhatTheBoxNeeds(t *testing.T) {
	for name, in := range loadBoxes(t) {
		if err := in.Validate(Boxes[name]); err != nil {
			t.Errorf("%s/config.json:\n%v", name, err)
		}
		if in.Hostname != Placeholder {
			t.Errorf("%s/config.json: Hostname %q: the committed config names no site (want %q)", name, in.Hostname, Placeholder)
		}
	}
}

// The metrics are served in the tunnel only: a LAN-wide -metrics is refused.
func TestMetricsOnTheLANAreRefused(t *testing.T) {
	in := loadBoxes(t)["pc"]
	pc := in.PackageConfig[Module+"/cmd/relaisd"]
	pc.CommandLineFlags = []string{"-data=/perm/relais", "-metrics=:9104"}
	in.PackageConfig[Module+"/cmd/relaisd"] = pc
	if err := in.Validate(Boxes["pc"]); err == nil || !strings.Contains(err.Error(), "-metrics=tunnel:PORT") {
		t.Fatalf("Validate = %v, want the -metrics flag refused", err)
	}
}

func TestMisspeltFieldIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"Hostname": "relais", "Packages": [], "KernelExtraArg": ["rootwait"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "KernelExtraArg") {
		t.Fatalf("Load = %v, want an unknown-field error", err)
	}
}

// Every Relais package an image runs exists in this module and is a
// command; every other package is pinned in gokrazy.mod.
func TestEveryPackagePathExists(t *testing.T) {
	root := moduleRoot(t)
	pinned := pinnedModules(t)
	for name, in := range loadBoxes(t) {
		pkgs := slices.Clone(in.Packages)
		for _, p := range []*string{in.KernelPackage, in.FirmwarePackage, in.EEPROMPackage} {
			if p != nil && *p != "" {
				pkgs = append(pkgs, *p)
			}
		}
		if in.GokrazyPackages != nil {
			pkgs = append(pkgs, *in.GokrazyPackages...)
		} else {
			pkgs = append(pkgs, "github.com/gokrazy/gokrazy/cmd/dhcp") // gokrazy's defaults
		}
		pkgs = append(pkgs, "github.com/gokrazy/gokrazy") // init
		for _, p := range pkgs {
			if rel, ok := strings.CutPrefix(p, Module+"/"); ok {
				bp, err := build.Default.ImportDir(filepath.Join(root, filepath.FromSlash(rel)), 0)
				if err != nil {
					t.Errorf("%s: package %s: %v", name, p, err)
				} else if bp.Name != "main" {
					t.Errorf("%s: package %s is %q, not a command", name, p, bp.Name)
				}
				continue
			}
			if !slices.ContainsFunc(pinned, func(m string) bool { return p == m || strings.HasPrefix(p, m+"/") }) {
				t.Errorf("%s: package %s is in no module pinned in gokrazy.mod", name, p)
			}
		}
	}
}

// pinnedModules reads the require block of gokrazy.mod.
func pinnedModules(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("gokrazy.mod")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mods []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "require (":
			in = true
		case line == ")":
			in = false
		case in && line != "" && !strings.HasPrefix(line, "//"):
			f := strings.Fields(line)
			if len(f) != 2 || !strings.HasPrefix(f[1], "v") {
				t.Fatalf("gokrazy.mod: %q: want module version", line)
			}
			mods = append(mods, f[0])
		}
	}
	if len(mods) == 0 {
		t.Fatal("gokrazy.mod pins nothing")
	}
	return mods
}

func TestCommittedConfigsHoldNoSecret(t *testing.T) {
	for name, in := range loadBoxes(t) {
		if s := in.Secrets(); len(s) > 0 {
			t.Errorf("%s/config.json holds secrets: %v", name, s)
		}
		if in.Update != nil && in.Update.Hostname != "" {
			t.Errorf("%s/config.json: Update.Hostname %q is a site's address: it comes from the site", name, in.Update.Hostname)
		}
	}
	// Nothing committed in image/ looks like a key or a password either.
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") || strings.HasSuffix(path, ".go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if m := committedSecretRE.Find(b); m != nil && !ignored(path) {
			t.Errorf("%s contains %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// committedSecretRE finds a password value or a PEM key (a value, not a
// shell expansion as in README's example).
var committedSecretRE = regexp.MustCompile(`"HTTPPassword":\s*"[^"]|-----BEGIN|` + EnvPassword + `=[^$\s]`)

// ignored reports whether path is one image/.gitignore keeps out of git.
func ignored(path string) bool {
	first := strings.Split(filepath.ToSlash(path), "/")[0]
	return first == "build" || first == "sites" || path == "site.env"
}

func TestSiteComesFromTheFileAndTheEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.env")
	file := "# CHU Nord\nRELAIS_HOSTNAME=relais-chu-nord\nRELAIS_HTTP_PASSWORD=\"from-file\"\n\nRELAIS_UPDATE_HOST=10.8.0.12\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvPassword: "from-env"}
	s, err := LoadSite(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Site{Hostname: "relais-chu-nord", UpdateHost: "10.8.0.12", Password: "from-env"}
	if s != want {
		t.Fatalf("site %+v, want %+v", s, want)
	}
	if s, err := LoadSite(filepath.Join(t.TempDir(), "none.env"), func(k string) string { return env[k] }); err != nil || s.Password != "from-env" {
		t.Fatalf("no site file: %+v, %v", s, err)
	}
}

func TestSiteInstanceIsBuildable(t *testing.T) {
	root := moduleRoot(t)
	mod, err := os.ReadFile("gokrazy.mod")
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range loadBoxes(t) {
		if _, err := in.ForSite(Site{Password: "pw"}); err == nil {
			t.Errorf("%s: an instance without a site hostname", name)
		}
		if _, err := in.ForSite(Site{Hostname: "relais-chu-nord"}); err == nil {
			t.Errorf("%s: an instance without a password", name)
		}
		inst, err := in.ForSite(Site{Hostname: "relais-chu-nord", Password: testPassword, UpdateHost: "10.8.0.12"})
		if err != nil {
			t.Fatal(err)
		}
		if in.Update.HTTPPassword != "" || in.Hostname != Placeholder {
			t.Fatalf("%s: ForSite changed the committed config", name)
		}
		dir := filepath.Join(t.TempDir(), "relais-chu-nord-"+name)
		if err := WriteInstance(dir, inst, mod, root); err != nil {
			t.Fatal(err)
		}
		got, err := Load(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := got.Validate(Boxes[name]); err != nil {
			t.Errorf("%s: written instance: %v", name, err)
		}
		if got.Hostname != "relais-chu-nord" || got.Update.HTTPPassword != testPassword || got.Update.Hostname != "10.8.0.12" || got.Update.UseTLS != "off" {
			t.Errorf("%s: written instance %+v, update %+v", name, got, got.Update)
		}
		if fi, err := os.Stat(filepath.Join(dir, "config.json")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: config.json with the password: %v, mode %v, want 0600", name, err, fi.Mode())
		}
		relais, err := os.ReadFile(filepath.Join(dir, "builddir", "github.com", "relais", "relais", "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(relais), "replace "+Module+" => "+root+"\n") {
			t.Errorf("%s: relais builddir go.mod does not build from the checkout:\n%s", name, relais)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "builddir", "go.mod")); err != nil || string(b) != string(mod) {
			t.Errorf("%s: builddir/go.mod is not gokrazy.mod: %v", name, err)
		}
	}
}

func TestSecretsAreFound(t *testing.T) {
	in := &Instance{
		Update:        &Update{HTTPPassword: "hunter2", KeyPEM: "-----BEGIN PRIVATE KEY-----"},
		PackageConfig: map[string]PackageConfig{Module + "/cmd/relaisd": {Environment: []string{"WG_PRIVATE_KEY=abc"}}},
	}
	want := []string{"Update.HTTPPassword", "Update.KeyPEM", "WG_PRIVATE_KEY=abc"}
	if got := in.Secrets(); !slices.Equal(got, want) {
		t.Fatalf("secrets %q, want %q", got, want)
	}
}

// An image without the update guard or its boot counter could never be
// switched back: Validate refuses it.
func TestImageWithoutTheGuardIsRefused(t *testing.T) {
	for name, in := range loadBoxes(t) {
		for _, p := range []string{GuardPackage, BootCountPackage} {
			c := *in
			c.Packages = slices.DeleteFunc(slices.Clone(in.Packages), func(s string) bool { return s == p })
			if err := c.Validate(Boxes[name]); err == nil || !strings.Contains(err.Error(), p+" missing") {
				t.Errorf("%s without %s: %v", name, p, err)
			}
		}
	}
}

// testPassword is what PasswordRecipe makes.
const testPassword = "q7-Xk_2mZ0pLr9sTw4vN8bYc"

func TestPasswordGokCannotUseIsRefused(t *testing.T) {
	if err := CheckPassword(testPassword); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"", "q7/Xk+2mZ0pLr9sTw4vN8bYc", "q7Xk2mZ0pLr9sTw4vN8bY@c", "q7Xk2mZ0pLr9sTw4vN8bY:c", "short-pw"} {
		err := CheckPassword(pw)
		if err == nil {
			t.Errorf("%q accepted", pw)
			continue
		}
		if pw != "" && strings.Contains(err.Error(), pw) {
			t.Errorf("the error prints the password: %v", err)
		}
	}
	in, err := Load(filepath.Join("pc", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.ForSite(Site{Hostname: "relais-chu-nord", Password: "q7/Xk+2mZ0pLr9sTw4vN8bYc"}); err == nil || !strings.Contains(err.Error(), "tr '+/' '-_'") {
		t.Fatalf("ForSite with a base64 password: %v, want the recipe", err)
	}
}

// The console over SSH is reached through the tunnel only: an image whose
// relais-ssh listens off loopback, whose relaisd forwards elsewhere, or
// that has no relais-ssh, is refused.
func TestSSHConsoleOffTheTunnelIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(in *Instance)
		want   string
	}{
		{"relais-ssh on every address", func(in *Instance) {
			in.PackageConfig[SSHPackage] = PackageConfig{CommandLineFlags: []string{"-data=/perm/relais", "-listen=:2222"}}
		}, "-listen=\":2222\": want a loopback address"},
		{"relaisd forwarding to another port", func(in *Instance) {
			pc := in.PackageConfig[DaemonPackage]
			pc.CommandLineFlags = []string{"-data=/perm/relais", "-ssh-console=tunnel:22=127.0.0.1:2223"}
			in.PackageConfig[DaemonPackage] = pc
		}, "want -ssh-console=tunnel:22=127.0.0.1:2222"},
		{"no relais-ssh", func(in *Instance) {
			in.Packages = slices.DeleteFunc(in.Packages, func(s string) bool { return s == SSHPackage })
			delete(in.PackageConfig, SSHPackage)
		}, SSHPackage + " missing"},
	} {
		in := loadBoxes(t)["pc"]
		tc.change(in)
		if err := in.Validate(Boxes["pc"]); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestSiteConsoleKeysGoIntoTheImage: RELAIS_CONSOLE_KEYS names an
// authorized_keys file next to the site file; its keys go into the image
// where relais-ssh reads them while the box has no list. A file that is not
// public keys (a private key, by mistake) is refused without being printed.
func TestSiteConsoleKeysGoIntoTheImage(t *testing.T) {
	dir := t.TempDir()
	team := peers.AuthorizedKey(peers.SSHKey(t), "team@center")
	os.WriteFile(filepath.Join(dir, "team.pub"), []byte("# the regional team\n"+team+"\n"), 0o644)
	site := filepath.Join(dir, "chu-nord.env")
	os.WriteFile(site, []byte("RELAIS_HOSTNAME=relais-chu-nord\nRELAIS_HTTP_PASSWORD="+testPassword+"\nRELAIS_CONSOLE_KEYS=team.pub\n"), 0o600)
	s, err := LoadSite(site, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if s.ConsoleKeys != team+"\n" {
		t.Fatalf("site keys %q", s.ConsoleKeys)
	}
	mod, _ := os.ReadFile("gokrazy.mod")
	for name, in := range loadBoxes(t) {
		inst, err := in.ForSite(s)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), name)
		if err := WriteInstance(out, inst, mod, moduleRoot(t)); err != nil {
			t.Fatal(err)
		}
		got, err := Load(filepath.Join(out, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := got.Validate(Boxes[name]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if k := got.PackageConfig[SSHPackage].ExtraFileContents[consolekeys.ImageFile]; k != team+"\n" {
			t.Errorf("%s: the image's %s holds %q", name, consolekeys.ImageFile, k)
		}
		if len(in.PackageConfig[SSHPackage].ExtraFileContents) != 0 {
			t.Errorf("%s: ForSite changed the committed config", name)
		}
	}

	private := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END OPENSSH PRIVATE KEY-----\n"
	os.WriteFile(filepath.Join(dir, "team.pub"), []byte(private), 0o600)
	_, err = LoadSite(site, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "line 1: not a public key line") || strings.Contains(err.Error(), "b3BlbnNzaC1rZXkt") {
		t.Fatalf("a private key as console keys: %v", err)
	}
}
