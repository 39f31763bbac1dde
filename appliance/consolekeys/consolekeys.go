// Package consolekeys is the list of public keys allowed to open the
// console over SSH: an authorized_keys file (one key a line, as ssh-keygen
// writes them) in the data folder, which relaisd edits for the console;
// while the data folder has none, the keys an image build put in the
// read-only root file system (a site file's RELAIS_CONSOLE_KEYS). The
// console over SSH reads the list at each login, so a change applies at
// once.
package consolekeys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

const (
	// File is the box's own list, in the data folder.
	File = "console_authorized_keys"
	// ImageFile is where an image build puts the site's keys (gokrazy's
	// root file system, read-only).
	ImageFile = "/etc/relais/console_authorized_keys"
	// HostKeyFile is the console's SSH host key, in the data folder: made
	// on first use, readable by the owner only, with its public half in
	// HostKeyFile+".pub".
	HostKeyFile = "console_host_key"
)

// Key is one allowed key.
type Key struct {
	ssh.PublicKey
	Comment string // what ssh-keygen put after the key: usually user@host
}

// Fingerprint is the key's SHA256 fingerprint, as ssh-keygen -l prints it:
// what events and the console show of a key.
func (k Key) Fingerprint() string { return ssh.FingerprintSHA256(k.PublicKey) }

// Line is the key as an authorized_keys line.
func (k Key) Line() string {
	s := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k.PublicKey)), "\n")
	if k.Comment != "" {
		s += " " + k.Comment
	}
	return s
}

// ParseLine reads one key: "ssh-ed25519 AAAA… comment". Options (from=,
// command=…) are refused: nothing here would honour them.
func ParseLine(line string) (Key, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return Key{}, errors.New("no key: paste a public key line, for example ssh-ed25519 AAAA… team@center")
	}
	pk, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return Key{}, fmt.Errorf("not a public key line (ssh-ed25519 AAAA… comment): %w", err)
	}
	if len(opts) > 0 {
		return Key{}, fmt.Errorf("options %s are not honoured by the console: give the key alone", strings.Join(opts, ","))
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return Key{}, errors.New("more than one key: give one key")
	}
	return Key{PublicKey: pk, Comment: comment}, nil
}

// Parse reads an authorized_keys file: blank lines and # comments are
// skipped. The keys of the good lines come back with an error naming each
// bad one.
func Parse(b []byte) ([]Key, error) {
	var keys []Key
	var errs []error
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := ParseLine(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n+1, err))
			continue
		}
		keys = append(keys, k)
	}
	return keys, errors.Join(errs...)
}

// Format writes keys as an authorized_keys file.
func Format(keys []Key) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(k.Line() + "\n")
	}
	return b.Bytes()
}

// Files are where the list is read: the box's own (Box, in the data
// folder) when it exists, else the image's (Image; "" for none).
type Files struct {
	Box, Image string
}

// In is the list of the data folder dataDir, with the image's list at
// image ("": none) while it has none.
func In(dataDir, image string) Files {
	return Files{Box: filepath.Join(dataDir, File), Image: image}
}

// Load reads the list in force and says from which file ("" when there is
// none: no key may log in). A file with bad lines gives the keys of its
// good lines and an error.
func (f Files) Load() (keys []Key, from string, err error) {
	for _, path := range []string{f.Box, f.Image} {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, path, fmt.Errorf("console keys: %w", err)
		}
		keys, err := Parse(b)
		if err != nil {
			err = fmt.Errorf("console keys %s: %w", path, err)
		}
		return keys, path, err
	}
	return nil, "", nil
}

// Allows reports whether k is in keys.
func Allows(keys []Key, k ssh.PublicKey) bool { return Index(keys, ssh.FingerprintSHA256(k)) >= 0 }

// Index is the position of the key with fingerprint fp in keys, or -1.
func Index(keys []Key, fp string) int {
	for i, k := range keys {
		if k.Fingerprint() == fp {
			return i
		}
	}
	return -1
}

// CheckListen refuses a console address off loopback: the console over SSH
// believes relaisd's PROXY header, so only this box's programs may reach
// it; relaisd forwards the tunnel's SSH port to it, the LAN must not.
func CheckListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if ip, perr := netip.ParseAddr(host); err != nil || perr != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: want a loopback address and port for the console, like 127.0.0.1:2222 (relaisd forwards the tunnel's SSH port to it; the LAN must not reach it)", addr)
	}
	return nil
}
