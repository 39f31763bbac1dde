// Package image holds the gokrazy instance configurations of the Relais box
// (pc/config.json, pi/config.json), the pinned gokrazy packages
// (gokrazy.mod), and what makes a buildable instance of them for one site:
// the committed configs carry no secret and no site name; make image and make
// update merge those in from the builder's environment or a git-ignored site
// file, into a git-ignored instance folder that gok builds. See README.md.
package image

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/relais/relais/appliance/consolekeys"
)

// Module is the Go module of Relais; its packages are built from the
// checkout, not from a version.
const Module = "github.com/relais/relais"

// The update guard (judging relaisd from outside after an update) and its
// boot counter (for when the guard cannot run): programs of their own in
// every image.
const (
	GuardPackage     = Module + "/cmd/relais-guard"
	BootCountPackage = Module + "/cmd/relais-bootcount"
)

// The console over SSH, for the regional team: relais-ssh listens on
// loopback, relaisd forwards the tunnel's SSH port to it
// (-ssh-console=tunnel:22=ADDR, ADDR the -listen of relais-ssh).
const (
	DaemonPackage = Module + "/cmd/relaisd"
	SSHPackage    = Module + "/cmd/relais-ssh"
)

// Placeholder is the Hostname of the committed configs. A site's hostname
// replaces it when an instance is made: gokrazy derives the partition UUIDs
// from the hostname, so a box keeps its site's hostname for life.
const Placeholder = "relais"

// Boxes are the committed instance configs, by the folder they are in.
var Boxes = map[string]Box{
	"pc": {Arch: "amd64", Kernel: "github.com/gokrazy/kernel.amd64"},
	"pi": {Arch: "arm64", Kernel: "github.com/gokrazy/kernel.rpi", Firmware: "github.com/gokrazy/firmware", EEPROM: "github.com/gokrazy/rpi-eeprom"},
}

// Box is what a kind of box needs from its config.
type Box struct {
	Arch                     string
	Kernel, Firmware, EEPROM string // "" = none (a PC has no Pi firmware)
}

// Instance is a gokrazy instance configuration (config.json): the fields
// Relais uses, named and typed as in github.com/gokrazy/internal/config
// (Struct). Loading is strict, so a misspelt field is an error here instead
// of being ignored by gok.
type Instance struct {
	Hostname        string                   `json:"Hostname"`
	Update          *Update                  `json:"Update,omitempty"`
	Environment     []string                 `json:"Environment,omitempty"`
	Packages        []string                 `json:"Packages"`
	PackageConfig   map[string]PackageConfig `json:"PackageConfig,omitempty"`
	SerialConsole   string                   `json:"SerialConsole,omitempty"`
	GokrazyPackages *[]string                `json:"GokrazyPackages,omitempty"`
	KernelPackage   *string                  `json:"KernelPackage,omitempty"`
	FirmwarePackage *string                  `json:"FirmwarePackage,omitempty"`
	EEPROMPackage   *string                  `json:"EEPROMPackage,omitempty"`
	KernelExtraArgs []string                 `json:"KernelExtraArgs,omitempty"`
}

// Update is gokrazy's UpdateStruct: how gok reaches the box, and the
// password the image accepts.
type Update struct {
	Hostname     string `json:"Hostname,omitempty"` // where gok update connects; not in the image
	UseTLS       string `json:"UseTLS,omitempty"`
	HTTPPort     string `json:"HTTPPort,omitempty"`
	HTTPSPort    string `json:"HTTPSPort,omitempty"`
	HTTPPassword string `json:"HTTPPassword,omitempty"`
	CertPEM      string `json:"CertPEM,omitempty"`
	KeyPEM       string `json:"KeyPEM,omitempty"`
}

// PackageConfig is gokrazy's per-package configuration.
type PackageConfig struct {
	GoBuildTags      []string          `json:"GoBuildTags,omitempty"`
	Environment      []string          `json:"Environment,omitempty"`
	CommandLineFlags []string          `json:"CommandLineFlags,omitempty"`
	ExtraFilePaths   map[string]string `json:"ExtraFilePaths,omitempty"`
	// ExtraFileContents maps a path of the root file system to the
	// file's text (mode 0644, read-only on the box).
	ExtraFileContents map[string]string `json:"ExtraFileContents,omitempty"`
	DontStart         bool              `json:"DontStart,omitempty"`
	WaitForClock      bool              `json:"WaitForClock,omitempty"`
	WaitFor           []string          `json:"WaitFor,omitempty"`
}

// Load reads an instance config strictly.
func Load(path string) (*Instance, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var in Instance
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the config", path)
	}
	return &in, nil
}

// Validate checks what every Relais image needs, for a box of the given
// kind.
func (in *Instance) Validate(box Box) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !hostnameRE.MatchString(in.Hostname) {
		bad("Hostname %q: want a DNS label (a-z, 0-9, -)", in.Hostname)
	}
	for _, p := range []string{DaemonPackage, Module + "/cmd/relais", GuardPackage, BootCountPackage, SSHPackage} {
		if !slices.Contains(in.Packages, p) {
			bad("Packages: %s missing", p)
		}
	}
	for p := range in.PackageConfig {
		if !slices.Contains(in.Packages, p) {
			bad("PackageConfig for %s, which is not in Packages", p)
		}
	}
	if f := in.PackageConfig[DaemonPackage].CommandLineFlags; !slices.Contains(f, "-data=/perm/relais") {
		bad("relaisd flags %q: want -data=/perm/relais (the writable partition)", f)
	}
	for _, f := range in.PackageConfig[DaemonPackage].CommandLineFlags {
		// The metrics are for the regional team, not for the hospital LAN.
		if v, ok := strings.CutPrefix(f, "-metrics="); ok && !strings.HasPrefix(v, "tunnel:") {
			bad("relaisd flag %s: want -metrics=tunnel:PORT (the tunnel's address and loopback only)", f)
		}
	}
	if err := in.checkSSHConsole(); err != nil {
		bad("%v", err)
	}
	// The guard and its boot counter keep their record next to relaisd's
	// data, where relaisd's control socket is.
	if f := in.PackageConfig[GuardPackage].CommandLineFlags; !slices.Contains(f, "-data=/perm/relais") {
		bad("relais-guard flags %q: want -data=/perm/relais (relaisd's data folder)", f)
	}
	if f := in.PackageConfig[BootCountPackage].CommandLineFlags; !slices.Contains(f, "-dir=/perm/relais/guard") {
		bad("relais-bootcount flags %q: want -dir=/perm/relais/guard (the guard's folder)", f)
	}
	for _, p := range []string{GuardPackage, BootCountPackage} {
		if c := in.PackageConfig[p]; c.DontStart || c.WaitForClock || len(c.WaitFor) > 0 {
			bad("%s: must start at once at every boot (no DontStart, WaitForClock, WaitFor)", p)
		}
	}
	if f := in.PackageConfig[Module+"/cmd/relais"].CommandLineFlags; !slices.Equal(f, []string{"console", "--vt", "2"}) {
		bad("relais flags %q: want console --vt 2 (init owns the first console)", f)
	}
	if !slices.Contains(in.Environment, "GOARCH="+box.Arch) || !slices.Contains(in.Environment, "GOOS=linux") {
		bad("Environment %q: want GOOS=linux and GOARCH=%s", in.Environment, box.Arch)
	}
	for _, p := range []struct {
		field string
		got   *string
		want  string
	}{{"KernelPackage", in.KernelPackage, box.Kernel}, {"FirmwarePackage", in.FirmwarePackage, box.Firmware}, {"EEPROMPackage", in.EEPROMPackage, box.EEPROM}} {
		// Unset means gokrazy's default (the Pi's), so each is explicit.
		if p.got == nil || *p.got != p.want {
			bad("%s: want %q, explicitly", p.field, p.want)
		}
	}
	for _, arg := range []string{"rootdelay=0", "rootwait"} {
		if !slices.Contains(in.KernelExtraArgs, arg) {
			bad("KernelExtraArgs: %s missing", arg)
		}
	}
	if in.SerialConsole == "" {
		bad("SerialConsole: unset (gokrazy's default is the Pi's serial0)")
	}
	if in.Update == nil || in.Update.UseTLS != "off" {
		bad("Update.UseTLS: want off (updates come through WireGuard; gokrazy's local socket stays plain HTTP)")
	}
	return errors.Join(errs...)
}

// checkSSHConsole: relais-ssh listens on loopback only (the LAN must not
// reach the console, and it believes relaisd's PROXY header), and relaisd
// forwards the tunnel's port to that address and no other.
func (in *Instance) checkSSHConsole() error {
	listen := ""
	for _, f := range in.PackageConfig[SSHPackage].CommandLineFlags {
		if v, ok := strings.CutPrefix(f, "-listen="); ok {
			listen = v
		}
	}
	if err := consolekeys.CheckListen(listen); err != nil {
		return fmt.Errorf("relais-ssh flags %q: -listen=%w", in.PackageConfig[SSHPackage].CommandLineFlags, err)
	}
	for _, f := range in.PackageConfig[DaemonPackage].CommandLineFlags {
		v, ok := strings.CutPrefix(f, "-ssh-console=")
		from, to, _ := strings.Cut(v, "=")
		if ok && strings.HasPrefix(from, "tunnel:") && to == listen {
			return nil
		}
	}
	return fmt.Errorf("relaisd flags %q: want -ssh-console=tunnel:22=%s (the tunnel's SSH port to relais-ssh)",
		in.PackageConfig[DaemonPackage].CommandLineFlags, listen)
}

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Secrets lists the secrets found in the config: it must hold none when
// committed.
func (in *Instance) Secrets() []string {
	var found []string
	if u := in.Update; u != nil {
		for name, v := range map[string]string{"Update.HTTPPassword": u.HTTPPassword, "Update.CertPEM": u.CertPEM, "Update.KeyPEM": u.KeyPEM} {
			if v != "" {
				found = append(found, name)
			}
		}
	}
	env := slices.Clone(in.Environment)
	for _, pc := range in.PackageConfig {
		env = append(env, pc.Environment...)
		env = append(env, pc.CommandLineFlags...)
	}
	for _, kv := range env {
		if secretRE.MatchString(kv) {
			found = append(found, kv)
		}
	}
	slices.Sort(found)
	return found
}

var secretRE = regexp.MustCompile(`(?i)(password|passwd|secret|token|private|psk|-----BEGIN)`)

// Site is what a site's instance adds to a committed config.
type Site struct {
	// Hostname names the box (RELAIS_HOSTNAME); fixed for life.
	Hostname string
	// UpdateHost is where gok update reaches the box: its address in the
	// tunnel (RELAIS_UPDATE_HOST). Only make update needs it.
	UpdateHost string
	// Password is the gokrazy HTTP password (RELAIS_HTTP_PASSWORD).
	Password string
	// HTTPPort, when set, replaces the config's port of gokrazy's web
	// interface and update API (RELAIS_HTTP_PORT; image/test.sh uses it
	// for a VM behind a forwarded port).
	HTTPPort string
	// ConsoleKeys are the public keys allowed on the console over SSH,
	// one authorized_keys line each, read from the file RELAIS_CONSOLE_KEYS
	// names; the image carries them (consolekeys.ImageFile) for as long as
	// the box has no list of its own.
	ConsoleKeys string
}

// Site settings, as environment variables or KEY=VALUE lines of a site file.
const (
	EnvHostname   = "RELAIS_HOSTNAME"
	EnvUpdateHost = "RELAIS_UPDATE_HOST"
	EnvPassword   = "RELAIS_HTTP_PASSWORD"
	EnvHTTPPort   = "RELAIS_HTTP_PORT"
	// EnvConsoleKeys names an authorized_keys file: relative to the site
	// file's folder when set there, to the current one from the environment.
	EnvConsoleKeys = "RELAIS_CONSOLE_KEYS"
)

// LoadSite reads the site file (KEY=VALUE lines, # comments; a missing file
// is empty), then lets the environment (getenv) override it.
func LoadSite(path string, getenv func(string) string) (Site, error) {
	vals := map[string]string{}
	if path != "" {
		f, err := os.Open(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return Site{}, err
		default:
			defer f.Close()
			sc := bufio.NewScanner(f)
			for n := 1; sc.Scan(); n++ {
				line := strings.TrimSpace(sc.Text())
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				k, v, ok := strings.Cut(line, "=")
				if !ok {
					return Site{}, fmt.Errorf("%s:%d: want KEY=VALUE", path, n)
				}
				vals[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
			}
			if err := sc.Err(); err != nil {
				return Site{}, err
			}
		}
	}
	if k := vals[EnvConsoleKeys]; k != "" && !filepath.IsAbs(k) {
		vals[EnvConsoleKeys] = filepath.Join(filepath.Dir(path), k)
	}
	for _, k := range []string{EnvHostname, EnvUpdateHost, EnvPassword, EnvHTTPPort, EnvConsoleKeys} {
		if v := getenv(k); v != "" {
			vals[k] = v
		}
	}
	site := Site{Hostname: vals[EnvHostname], UpdateHost: vals[EnvUpdateHost], Password: vals[EnvPassword], HTTPPort: vals[EnvHTTPPort]}
	if path := vals[EnvConsoleKeys]; path != "" {
		var err error
		if site.ConsoleKeys, err = readConsoleKeys(path); err != nil {
			return Site{}, err
		}
	}
	return site, nil
}

// readConsoleKeys reads and checks the site's console keys; the errors
// name lines, never their contents (a private key put there by mistake).
func readConsoleKeys(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", EnvConsoleKeys, err)
	}
	keys, err := consolekeys.Parse(b)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", EnvConsoleKeys, path, err)
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("%s %s: no public key in it (one ssh-ed25519 AAAA… line per key)", EnvConsoleKeys, path)
	}
	return string(consolekeys.Format(keys)), nil
}

// ForSite returns a copy of the config for a site.
func (in *Instance) ForSite(s Site) (*Instance, error) {
	if s.Hostname == "" || s.Hostname == Placeholder {
		return nil, fmt.Errorf("no site hostname: set %s (it names the box for life)", EnvHostname)
	}
	if err := CheckPassword(s.Password); err != nil {
		return nil, err
	}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	var out Instance
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	out.Hostname = s.Hostname
	if out.Update == nil {
		out.Update = &Update{}
	}
	out.Update.HTTPPassword = s.Password
	out.Update.Hostname = s.UpdateHost
	if s.HTTPPort != "" {
		out.Update.HTTPPort = s.HTTPPort
	}
	if s.ConsoleKeys != "" {
		if out.PackageConfig == nil {
			out.PackageConfig = map[string]PackageConfig{}
		}
		pc := out.PackageConfig[SSHPackage]
		pc.ExtraFileContents = map[string]string{consolekeys.ImageFile: s.ConsoleKeys}
		out.PackageConfig[SSHPackage] = pc
	}
	return &out, nil
}

// PasswordRecipe makes a password gok can use.
const PasswordRecipe = "head -c 18 /dev/urandom | base64 | tr '+/' '-_'"

// CheckPassword refuses an update password gok cannot use: gok puts it as
// it is into its update URL (http://gokrazy:PASSWORD@host/), so a "/" (a
// third of base64 passwords have one), "@", ":", "?", "#" or "%" breaks the
// first update ("invalid port") although the image builds. Only URL-safe
// characters are taken: letters, digits and - . _ ~.
func CheckPassword(pw string) error {
	if pw == "" {
		return fmt.Errorf("no update password: set %s (make one with %s)", EnvPassword, PasswordRecipe)
	}
	for _, r := range pw {
		if !urlSafe(r) {
			return fmt.Errorf("the update password (%s) has a character gok cannot put in its update URL (such as / + = @ :): use letters, digits and - . _ ~ only, e.g. %s", EnvPassword, PasswordRecipe)
		}
	}
	if len(pw) < 16 {
		return fmt.Errorf("the update password (%s) has %d characters: want 16 or more (%s makes 24)", EnvPassword, len(pw), PasswordRecipe)
	}
	return nil
}

func urlSafe(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r)
}

// WriteInstance writes a buildable gokrazy instance into dir: config.json
// (0600: it holds the password) and the builddir gok builds in — the pinned
// gokrazy packages (gokrazyMod, the contents of gokrazy.mod) for everything
// but Relais, whose packages come from the checkout at the path checkout.
func WriteInstance(dir string, in *Instance, gokrazyMod []byte, checkout string) error {
	if !filepath.IsAbs(checkout) {
		return fmt.Errorf("checkout %q: want an absolute path", checkout)
	}
	goMod, err := os.ReadFile(filepath.Join(checkout, "go.mod"))
	if err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	goSum, err := os.ReadFile(filepath.Join(checkout, "go.sum"))
	if err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	goLine := "go 1.26"
	for line := range strings.Lines(string(goMod)) {
		if strings.HasPrefix(line, "go ") {
			goLine = strings.TrimSpace(line)
		}
	}
	relais := fmt.Sprintf("module gokrazy/build/%[1]s\n\n%[2]s\n\nrequire %[1]s v0.0.0-00010101000000-000000000000\n\nreplace %[1]s => %[3]s\n", Module, goLine, checkout)

	b, err := json.MarshalIndent(in, "", "    ")
	if err != nil {
		return err
	}
	relaisDir := filepath.Join(dir, "builddir", filepath.FromSlash(Module))
	if err := os.MkdirAll(relaisDir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{filepath.Join(dir, "config.json"), append(b, '\n'), 0o600},
		{filepath.Join(dir, "builddir", "go.mod"), gokrazyMod, 0o644},
		{filepath.Join(relaisDir, "go.mod"), []byte(relais), 0o644},
		{filepath.Join(relaisDir, "go.sum"), goSum, 0o644},
	} {
		if err := os.WriteFile(f.path, f.data, f.perm); err != nil {
			return err
		}
		if err := os.Chmod(f.path, f.perm); err != nil { // an older file keeps its mode otherwise
			return err
		}
	}
	return nil
}
