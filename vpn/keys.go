package vpn

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// KeyFile is the name of the private key's file in the key folder.
const KeyFile = "private.key"

// Key is a WireGuard public key. Its text form is the base64 used by wg(8)
// and wg-quick.
type Key [32]byte

// ParseKey parses a base64 public key.
func ParseKey(s string) (Key, error) {
	var k Key
	if err := decodeKey(s, (*[32]byte)(&k)); err != nil {
		return Key{}, fmt.Errorf("public key: %w", err)
	}
	return k, nil
}

// String returns the key in base64.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// MarshalText returns the key in base64.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a base64 key.
func (k *Key) UnmarshalText(b []byte) error {
	var err error
	*k, err = ParseKey(string(b))
	return err
}

// IsZero reports whether the key is unset.
func (k Key) IsZero() bool { return k == Key{} }

// SecretKey is a private or preshared key. It never prints itself: String,
// GoString, slog and JSON all show "(hidden)", so a key in a struct that
// gets logged stays secret. Only [Config.WriteWGQuick] and the tunnel's
// configuration see its bytes.
type SecretKey struct{ b [32]byte }

const hidden = "(hidden)"

// GenerateSecretKey returns a new random private key (clamped for
// Curve25519), or a new preshared key.
func GenerateSecretKey() (SecretKey, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return SecretKey{}, fmt.Errorf("generate key: %w", err)
	}
	return SecretKey{b: k}, nil
}

// ParseSecretKey parses a base64 private or preshared key.
func ParseSecretKey(s string) (SecretKey, error) {
	var k SecretKey
	if err := decodeKey(s, &k.b); err != nil {
		return SecretKey{}, fmt.Errorf("secret key: %w", err)
	}
	return k, nil
}

// PublicKey returns the public key of a private key.
func (k SecretKey) PublicKey() Key { return Key(wgtypes.Key(k.b).PublicKey()) }

// IsZero reports whether the key is unset.
func (k SecretKey) IsZero() bool { return k.b == [32]byte{} }

// String, GoString, Format, LogValue and MarshalText hide the key.
func (k SecretKey) String() string               { return hidden }
func (k SecretKey) GoString() string             { return hidden }
func (k SecretKey) Format(f fmt.State, _ rune)   { io.WriteString(f, hidden) }
func (k SecretKey) LogValue() slog.Value         { return slog.StringValue(hidden) }
func (k SecretKey) MarshalText() ([]byte, error) { return []byte(hidden), nil }
func (k SecretKey) wg() wgtypes.Key              { return wgtypes.Key(k.b) }
func (k SecretKey) base64() string               { return base64.StdEncoding.EncodeToString(k.b[:]) }

func decodeKey(s string, dst *[32]byte) error {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		// The input may be a secret: never echo it.
		return errors.New("not 32 bytes of base64")
	}
	copy(dst[:], b)
	return nil
}

// LoadOrCreateKey returns the box's private key from dir/private.key,
// generating it on first start. dir is the key's own folder inside the data
// folder (for example /perm/relais/wireguard); it is created 0700 and the
// file 0600. An existing key is never overwritten. A folder or file that
// others can read or write, or that belongs to another user, is refused:
// the box will not use a key that may have leaked.
func LoadOrCreateKey(dir string) (SecretKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return SecretKey{}, fmt.Errorf("key folder: %w", err)
	}
	if err := checkPrivate(dir, true); err != nil {
		return SecretKey{}, err
	}
	path := filepath.Join(dir, KeyFile)
	k, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKeyFile(dir, path)
	}
	return k, err
}

// checkPrivate refuses a key folder or file that is not ours alone.
func checkPrivate(path string, wantDir bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	switch {
	case wantDir && !fi.IsDir():
		return fmt.Errorf("key folder %s is not a directory", path)
	case !wantDir && !fi.Mode().IsRegular():
		return fmt.Errorf("key file %s is not a regular file", path)
	}
	want := os.FileMode(0o600)
	if wantDir {
		want = 0o700
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("refusing to use the WireGuard key: %s has mode %04o, others may have read it; it must be %04o (chmod %o %s), or, if the key may have leaked, move it away to make a new one and give the reading center the new public key",
			path, perm, want, want, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("refusing to use the WireGuard key: %s belongs to uid %d, not to us (uid %d)", path, st.Uid, os.Geteuid())
	}
	return nil
}

func readKeyFile(path string) (SecretKey, error) {
	if _, err := os.Lstat(path); err != nil {
		return SecretKey{}, err
	}
	if err := checkPrivate(path, false); err != nil {
		return SecretKey{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return SecretKey{}, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return SecretKey{}, fmt.Errorf("key file %s: %w", path, err)
	}
	k, err := ParseSecretKey(string(b))
	if err != nil {
		return SecretKey{}, fmt.Errorf("key file %s: %w (it is never overwritten: repair or move it away)", path, err)
	}
	return k, nil
}

// createKeyFile writes a new key to a temporary file, syncs it, and links it
// into place: the link fails if a key appeared meanwhile, so no key is ever
// overwritten, and a crash leaves either no key or a whole one.
func createKeyFile(dir, path string) (SecretKey, error) {
	k, err := GenerateSecretKey()
	if err != nil {
		return SecretKey{}, err
	}
	tmp, err := writeKeyTemp(dir, ".private.key-*", k)
	if err != nil {
		return SecretKey{}, fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp)
	err = os.Link(tmp, path)
	if errors.Is(err, fs.ErrExist) {
		return readKeyFile(path) // another process made it first
	}
	if err != nil {
		return SecretKey{}, fmt.Errorf("create key file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return k, nil
}

// PresharedKeyFile is the name of the optional preshared key's file in the
// key folder.
const PresharedKeyFile = "preshared.key"

// LoadPresharedKey reads the preshared key kept in the key folder; nil when
// there is none. The same permission rules as for the private key apply.
func LoadPresharedKey(dir string) (*SecretKey, error) {
	k, err := readKeyFile(filepath.Join(dir, PresharedKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// SavePresharedKey keeps k (which the reading center handed over with the
// tunnel's configuration) in the key folder, 0600, replacing any previous
// one atomically; nil removes it.
func SavePresharedKey(dir string, k *SecretKey) error {
	path := filepath.Join(dir, PresharedKeyFile)
	if k == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove preshared key: %w", err)
		}
		return nil
	}
	if err := checkPrivate(dir, true); err != nil {
		return err
	}
	tmp, err := writeKeyTemp(dir, ".preshared.key-*", *k)
	if err == nil {
		defer os.Remove(tmp)
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("save preshared key %s: %w", path, err)
	}
	return nil
}

// writeKeyTemp writes k to a new 0600 file in dir, synced, and returns its
// name: the caller links or renames it into place.
func writeKeyTemp(dir, pattern string, k SecretKey) (string, error) {
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = io.WriteString(tmp, k.base64()+"\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}
