// Package config is the box's configuration: one JSON file in the data
// folder, validated field by field, written atomically. The daemon applies
// it; the console and the CLI edit it through the control API.
package config

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Config is the box's configuration: one JSON file in the data folder,
// edited on the console or through the control API, applied live.
type Config struct {
	// AETitle is ours: the called AE title modalities must use.
	AETitle string `json:"ae_title"`
	// Port is the DICOM port (104 on the box, 11112 elsewhere).
	Port int `json:"port"`
	// ListenAddress binds the DICOM port to one address of the box (the
	// imaging network's, say); empty listens on every interface.
	ListenAddress string `json:"listen_address,omitempty"`
	// Learning accepts any calling AE and records it, during installation.
	Learning bool `json:"learning"`
	// Modalities may send to us.
	Modalities []Modality `json:"modalities"`
	// Destinations receive everything we store, most urgent first.
	Destinations []Destination `json:"destinations"`
	// Urgent rules: a study is urgent when any rule matches one of its instances.
	Urgent []UrgentRule `json:"urgent_rules"`
	// Retention says when delivered studies are purged.
	Retention Retention `json:"retention"`
	// MaxAssociations bounds concurrent incoming associations. One calling
	// AE title, and one address, may hold half of them: the rest stay for
	// the others.
	MaxAssociations int `json:"max_associations"`
	// Tunnel is the WireGuard tunnel to the reading center.
	Tunnel Tunnel `json:"tunnel"`
	// Network is the box's own address on the hospital network (applied on
	// the box only; elsewhere the host system owns its network).
	Network Network `json:"network"`
	// Alarms sets when forwarding turns the health line amber or red.
	Alarms Alarms `json:"alarms,omitzero"`
}

// Alarms are the thresholds of forwarding alarms; zero takes the default.
type Alarms struct {
	// StallSeconds: an open association to a destination with nothing
	// moving for this long while instances wait is an alarm. Default 120.
	StallSeconds int `json:"stall_seconds,omitempty"`
	// OldestWaitingMinutes: a study waiting longer than this for a
	// destination is an alarm. Default 30.
	OldestWaitingMinutes int `json:"oldest_waiting_minutes,omitempty"`
}

// Stall is how long an association may make no progress.
func (a Alarms) Stall() time.Duration { return seconds(a.StallSeconds, 120) }

// OldestWaiting is how long a study may wait for a destination.
func (a Alarms) OldestWaiting() time.Duration { return 60 * seconds(a.OldestWaitingMinutes, 30) }

func seconds(n, def int) time.Duration {
	if n <= 0 {
		n = def
	}
	return time.Duration(n) * time.Second
}

// Network is the box's address on the hospital network: by DHCP (the
// default) or static.
type Network struct {
	// Mode is "dhcp" (or empty) or "static".
	Mode string `json:"mode,omitempty"`
	// Interface defaults to eth0.
	Interface string `json:"interface,omitempty"`
	// Address with its network (static only): 192.168.1.20/24.
	Address string `json:"address,omitempty"`
	// Gateway (static only; optional on an isolated imaging network).
	Gateway string `json:"gateway,omitempty"`
	// DNS servers (static only).
	DNS []string `json:"dns,omitempty"`
}

// Static reports whether the address is set by hand.
func (n Network) Static() bool { return n.Mode == "static" }

func (n Network) validate(add func(field, msg string)) {
	switch n.Mode {
	case "", "dhcp":
		return
	case "static":
	default:
		add("network.mode", fmt.Sprintf("%q is neither dhcp nor static", n.Mode))
		return
	}
	p, err := netip.ParsePrefix(n.Address)
	if err != nil || !p.Addr().Is4() || p.Bits() == 0 || p.Bits() > 30 {
		add("network.address", fmt.Sprintf("%q is not an IPv4 address with its network, like 192.168.1.20/24", n.Address))
	}
	if n.Gateway != "" {
		g, err := netip.ParseAddr(n.Gateway)
		switch {
		case err != nil || !g.Is4():
			add("network.gateway", fmt.Sprintf("%q is not an IPv4 address", n.Gateway))
		case p.IsValid() && !p.Masked().Contains(g):
			add("network.gateway", fmt.Sprintf("%s is not in the box's network %s", g, p.Masked()))
		}
	}
	for i, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			add(fmt.Sprintf("network.dns[%d]", i), fmt.Sprintf("%q is not an IP address", d))
		}
	}
}

// Tunnel is the WireGuard tunnel to the reading center; it is off until the
// peer's public key is set. The box's private key never appears here: it
// is made on the box and kept in the data folder; an optional preshared key
// is kept beside it.
type Tunnel struct {
	// Mode: "auto" (the default: the kernel's WireGuard, else the embedded
	// one), "kernel", "userspace", "netstack" (no privileges: development),
	// or "off".
	Mode string `json:"mode,omitempty"`
	// Address is ours inside the tunnel, with its network (10.8.0.2/24).
	Address string `json:"address,omitempty"`
	// ListenPort is our UDP port; 0 picks one (the box only initiates).
	ListenPort int `json:"listen_port,omitempty"`
	// PeerPublicKey is the reading center's public key (base64).
	PeerPublicKey string `json:"peer_public_key,omitempty"`
	// Endpoint is where the reading center answers: host:port.
	Endpoint string `json:"endpoint,omitempty"`
	// AllowedIPs are the reading center's addresses reached through the tunnel.
	AllowedIPs []string `json:"allowed_ips,omitempty"`
	// KeepaliveSeconds keeps NATs open; 25 is usual.
	KeepaliveSeconds int `json:"keepalive_seconds,omitempty"`
}

// Enabled reports whether the tunnel should be up.
func (t Tunnel) Enabled() bool { return t.PeerPublicKey != "" && t.Mode != "off" }

func (t Tunnel) validate(add func(field, msg string)) {
	switch t.Mode {
	case "", "auto", "kernel", "userspace", "netstack", "off":
	default:
		add("tunnel.mode", fmt.Sprintf("%q is not a mode (auto, kernel, userspace, netstack, off)", t.Mode))
	}
	if !t.Enabled() {
		return
	}
	if k, err := base64.StdEncoding.DecodeString(t.PeerPublicKey); err != nil || len(k) != 32 {
		add("tunnel.peer_public_key", "a WireGuard public key is 44 characters of base64, ending in =")
	}
	if _, err := netip.ParsePrefix(t.Address); err != nil {
		add("tunnel.address", fmt.Sprintf("%q is not an address with its network, like 10.8.0.2/24", t.Address))
	}
	if t.Endpoint != "" {
		if _, port, err := net.SplitHostPort(t.Endpoint); err != nil || CheckPort(atoi(port)) != "" {
			add("tunnel.endpoint", fmt.Sprintf("%q is not host:port, like vpn.center.example:51820", t.Endpoint))
		}
	}
	if len(t.AllowedIPs) == 0 {
		add("tunnel.allowed_ips", "at least one network of the reading center is needed, like 10.8.0.1/32")
	}
	for i, a := range t.AllowedIPs {
		if _, err := netip.ParsePrefix(a); err != nil {
			add(fmt.Sprintf("tunnel.allowed_ips[%d]", i), fmt.Sprintf("%q is not a network like 10.8.0.0/24", a))
		}
	}
	if t.ListenPort != 0 {
		add("tunnel.listen_port", CheckPort(t.ListenPort))
	}
	if t.KeepaliveSeconds < 0 || t.KeepaliveSeconds > 65535 {
		add("tunnel.keepalive_seconds", "must be 0 (off) to 65535")
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// Modality is a device allowed to send: its AE title and, optionally, the
// address (or network, in CIDR) it must send from, and the port of its own
// SCP, where Storage Commitment reports and echoes go.
type Modality struct {
	Name    string `json:"name,omitempty"`
	AETitle string `json:"ae_title"`
	Address string `json:"address,omitempty"`
	Port    int    `json:"port,omitempty"`
}

// Destination is a PACS we forward to.
type Destination struct {
	// Name identifies the destination's queue; it never changes once used.
	Name    string `json:"name"`
	AETitle string `json:"ae_title"`
	Host    string `json:"host"`
	Port    int    `json:"port"`
	// Commitment: ask for Storage Commitment; delivered studies become
	// purgeable only once committed. Without it, delivery is enough.
	Commitment bool `json:"commitment"`
	// Parallel associations; 1 keeps strict series order.
	Parallel int `json:"parallel,omitempty"`
	// Only, when not empty, limits what goes there; empty sends everything.
	Only Match `json:"only,omitempty"`
	// Paused destinations hold their queue.
	Paused bool `json:"paused,omitempty"`
	// CommitAfterSeconds: how long a study must be quiet (nothing new
	// received) before commitment is asked. Default 30.
	CommitAfterSeconds int `json:"commit_after_seconds,omitempty"`
	// ParkAfterAttempts: an instance that failed this many times here is
	// parked (kept, shown, retried only when someone asks). Default 5.
	ParkAfterAttempts int `json:"park_after_attempts,omitempty"`
}

// Match selects instances by sender and modality; empty lists match all.
type Match struct {
	CallingAETitles []string `json:"calling_ae_titles,omitempty"`
	Modalities      []string `json:"modalities,omitempty"`
}

// UrgentRule makes a study urgent. Set fields must all match: the calling
// AE title, the modality, and a header element (by keyword, for example
// RequestedProcedurePriority) equal to Value (case-insensitive).
type UrgentRule struct {
	CallingAETitle string `json:"calling_ae_title,omitempty"`
	Modality       string `json:"modality,omitempty"`
	Element        string `json:"element,omitempty"`
	Value          string `json:"value,omitempty"`
}

// Retention purges studies that are done everywhere (committed, or
// delivered where there is no commitment): by age, and by disk use. Studies
// not yet delivered are never purged.
//
// The watermarks are percents of the data disk in use: at the high one the
// oldest done studies are purged down to the low one. They must leave room
// for what the store keeps free (store.Space: Badger's headroom plus 5 % of
// the disk, at most 256 MiB, twice over), so that purging starts before new
// studies are refused: on a disk too small for them (85 % does not fit
// below about 3 GB with the default store options) the box lowers both by
// the same amount, and its status and event log say which ones apply.
// High 0 turns purging by disk use off, except that a disk about to refuse
// new studies still has done studies purged.
type Retention struct {
	MaxAgeDays           int `json:"max_age_days"`
	HighWatermarkPercent int `json:"high_watermark_percent"`
	LowWatermarkPercent  int `json:"low_watermark_percent"`
}

// DefaultMaxAssociations lets one caller hold 200 concurrent associations
// (its half), as storescp and Orthanc serve. An idle association costs
// about 20 KB of RSS (measured); a busy one also fills its two 64 KiB read
// buffers, so 400 busy ones take about 60 MB of a 1 GB box. Their 464
// descriptors (with the margin for callers not yet associated) stay below
// the usual hard limit of 4096, to which relaisd raises its own.
const DefaultMaxAssociations = 400

// Default is what a box starts with: it receives and holds, with no
// destination yet.
func Default() Config {
	return Config{
		AETitle:         "RELAIS",
		Port:            11112,
		Learning:        false,
		Retention:       Retention{MaxAgeDays: 30, HighWatermarkPercent: 85, LowWatermarkPercent: 75},
		MaxAssociations: DefaultMaxAssociations,
	}
}

// FieldError says which field is wrong and how.
type FieldError struct {
	Field string `json:"field"`
	Msg   string `json:"message"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// ValidationError lists every problem of a configuration.
type ValidationError []FieldError

func (v ValidationError) Error() string {
	msgs := make([]string, len(v))
	for i, e := range v {
		msgs[i] = e.Error()
	}
	return "invalid configuration: " + strings.Join(msgs, "; ")
}

// CheckAE checks an AE title: 1 to 16 printable ASCII characters, no backslash.
func CheckAE(ae string) string {
	switch {
	case strings.TrimSpace(ae) == "":
		return "an AE title is required"
	case len(ae) > 16:
		return fmt.Sprintf("%q is %d characters long; an AE title has at most 16", ae, len(ae))
	case strings.ContainsAny(ae, "\\"):
		return "an AE title may not contain a backslash"
	}
	for _, r := range ae {
		if r < 0x20 || r > 0x7E {
			return "an AE title has only printable ASCII characters"
		}
	}
	return ""
}

// CheckListenAddress checks the address the DICOM port is bound to: an IP
// address of the box, or empty for every interface.
func CheckListenAddress(s string) string {
	if s == "" {
		return ""
	}
	if _, err := netip.ParseAddr(s); err != nil {
		return fmt.Sprintf("%q is not an IP address (leave it empty to listen on every interface)", s)
	}
	return ""
}

// CheckPort checks a TCP or UDP port number.
func CheckPort(p int) string {
	if p < 1 || p > 65535 {
		return fmt.Sprintf("%d is not a port (1 to 65535)", p)
	}
	return ""
}

// Validate checks every field and reports all problems at once.
func (c *Config) Validate() error {
	var errs ValidationError
	add := func(field, msg string) {
		if msg != "" {
			errs = append(errs, FieldError{field, msg})
		}
	}
	add("ae_title", CheckAE(c.AETitle))
	add("port", CheckPort(c.Port))
	add("listen_address", CheckListenAddress(c.ListenAddress))
	if c.Alarms.StallSeconds < 0 {
		add("alarms.stall_seconds", "must not be negative (0 takes 120)")
	}
	if c.Alarms.OldestWaitingMinutes < 0 {
		add("alarms.oldest_waiting_minutes", "must not be negative (0 takes 30)")
	}
	if c.MaxAssociations < 1 || c.MaxAssociations > 1000 {
		add("max_associations", fmt.Sprintf("%d is out of range (1 to 1000)", c.MaxAssociations))
	}
	for i, m := range c.Modalities {
		f := fmt.Sprintf("modalities[%d]", i)
		add(f+".ae_title", CheckAE(m.AETitle))
		if m.Address != "" {
			if _, err := ParseAllowed(m.Address); err != nil {
				add(f+".address", fmt.Sprintf("%q is neither an IP address nor a network like 10.1.2.0/24", m.Address))
			}
		}
		if m.Port != 0 {
			add(f+".port", CheckPort(m.Port))
		}
	}
	names := map[string]bool{}
	for i, d := range c.Destinations {
		f := fmt.Sprintf("destinations[%d]", i)
		switch {
		case d.Name == "":
			add(f+".name", "a name is required")
		case names[d.Name]:
			add(f+".name", fmt.Sprintf("%q is used twice", d.Name))
		case strings.ContainsAny(d.Name, "/ \t\n"):
			add(f+".name", "a name has no spaces or slashes")
		}
		names[d.Name] = true
		add(f+".ae_title", CheckAE(d.AETitle))
		if d.Host == "" {
			add(f+".host", "a host name or address is required")
		} else if strings.ContainsAny(d.Host, " /:") && net.ParseIP(d.Host) == nil {
			add(f+".host", fmt.Sprintf("%q is not a host name or address", d.Host))
		}
		add(f+".port", CheckPort(d.Port))
		if d.Parallel < 0 || d.Parallel > 16 {
			add(f+".parallel", fmt.Sprintf("%d is out of range (1 to 16)", d.Parallel))
		}
		if d.CommitAfterSeconds < 0 {
			add(f+".commit_after_seconds", "must not be negative")
		}
		if d.ParkAfterAttempts < 0 || d.ParkAfterAttempts > 1000 {
			add(f+".park_after_attempts", fmt.Sprintf("%d is out of range (1 to 1000; 0 takes 5)", d.ParkAfterAttempts))
		}
	}
	for i, r := range c.Urgent {
		f := fmt.Sprintf("urgent_rules[%d]", i)
		if r.CallingAETitle == "" && r.Modality == "" && r.Element == "" {
			add(f, "a rule needs a calling AE title, a modality or an element")
		}
		if r.Element != "" {
			if _, err := tag.FindByKeyword(r.Element); err != nil {
				add(f+".element", fmt.Sprintf("%q is not a DICOM keyword (for example RequestedProcedurePriority)", r.Element))
			}
		}
	}
	c.Tunnel.validate(add)
	c.Network.validate(add)
	r := c.Retention
	if r.MaxAgeDays < 0 {
		add("retention.max_age_days", "must not be negative (0 keeps studies by age for ever)")
	}
	if r.HighWatermarkPercent < 0 || r.HighWatermarkPercent > 99 {
		add("retention.high_watermark_percent", "must be 0 (off) to 99")
	}
	if r.LowWatermarkPercent < 0 || (r.HighWatermarkPercent > 0 && r.LowWatermarkPercent >= r.HighWatermarkPercent) {
		add("retention.low_watermark_percent", "must be below the high watermark")
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Warnings lists what is valid but likely a mistake: a destination whose
// address is outside the networks of a configured tunnel is reached
// directly, not through it. Names are not resolved here.
func (c *Config) Warnings() []FieldError {
	if !c.Tunnel.Enabled() { // mode "" is auto: only "off" or no peer means no tunnel
		return nil
	}
	var nets []netip.Prefix
	for _, s := range c.Tunnel.AllowedIPs {
		if p, err := netip.ParsePrefix(s); err == nil {
			nets = append(nets, p)
		}
	}
	var ws []FieldError
	for i, d := range c.Destinations {
		ip, err := netip.ParseAddr(d.Host)
		if err != nil || slices.ContainsFunc(nets, func(p netip.Prefix) bool { return p.Contains(ip.Unmap()) }) {
			continue
		}
		msg := fmt.Sprintf("%s is outside the tunnel's networks (%s): it is reached directly, not through the tunnel",
			ip, strings.Join(c.Tunnel.AllowedIPs, ", "))
		ws = append(ws, FieldError{fmt.Sprintf("destinations[%d].host", i), msg})
	}
	return ws
}

// ParseAllowed reads an allowed address: an IP or a CIDR network.
func ParseAllowed(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Load reads the configuration file; a missing file gives the defaults.
func Load(path string) (Config, error) {
	c := Default()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config %s: %w", path, err)
	}
	if err := Decode(b, &c); err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			return c, fmt.Errorf("config %s:%w", path, err)
		}
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Save writes the configuration atomically: a crash leaves the old
// file or the new one, never half of one.
func Save(path string, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// WriteFileAtomic writes a file so that a crash leaves the old or the new one.
func WriteFileAtomic(path string, b []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	return d.Sync()
}

// Destination returns the named destination.
func (c *Config) Destination(name string) (Destination, bool) {
	for _, d := range c.Destinations {
		if d.Name == name {
			return d, true
		}
	}
	return Destination{}, false
}

// Workers is the number of parallel associations.
func (d Destination) Workers() int { return max(d.Parallel, 1) }

// ParkAfter is how many failed attempts park an instance here.
func (d Destination) ParkAfter() int {
	if d.ParkAfterAttempts <= 0 {
		return 5
	}
	return d.ParkAfterAttempts
}

// CommitAfter is how long a study must be quiet before commitment is asked.
func (d Destination) CommitAfter() time.Duration { return seconds(d.CommitAfterSeconds, 30) }

// Addr is the destination's host:port.
func (d Destination) Addr() string { return net.JoinHostPort(d.Host, fmt.Sprint(d.Port)) }

// DestinationByAE returns the destination whose AE title is ae: a reading
// center that sends results back calls with it.
func (c *Config) DestinationByAE(ae string) (Destination, bool) {
	for _, d := range c.Destinations {
		if d.AETitle == ae {
			return d, true
		}
	}
	return Destination{}, false
}

// Takes reports whether an instance from callingAE of modality goes to d:
// its filter matches, and d is not where the instance came from. An
// instance never goes back to the AE that sent it (results from the
// reading center are not returned to it), whatever the filters say.
func (d Destination) Takes(callingAE, modality string) bool {
	return d.AETitle != callingAE && d.Only.Matches(callingAE, modality)
}

// Matches reports whether an instance from callingAE of modality goes there.
func (m Match) Matches(callingAE, modality string) bool {
	if len(m.CallingAETitles) > 0 && !slices.Contains(m.CallingAETitles, callingAE) {
		return false
	}
	if len(m.Modalities) > 0 && !slices.ContainsFunc(m.Modalities, func(x string) bool { return strings.EqualFold(x, modality) }) {
		return false
	}
	return true
}

// Allowed reports whether a caller may associate: an allowed modality from
// its address, or a destination (reporting Storage Commitment on a new
// association).
func (c *Config) Allowed(ae string, ip netip.Addr) bool {
	for _, m := range c.Modalities {
		if m.AETitle != ae {
			continue
		}
		if m.Address == "" {
			return true
		}
		if p, err := ParseAllowed(m.Address); err == nil && p.Contains(ip) {
			return true
		}
	}
	for _, d := range c.Destinations {
		if d.AETitle == ae {
			return true
		}
	}
	return false
}
