package vpn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateKeyCreatesPrivateFileOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "wireguard")
	k1, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.IsZero() {
		t.Fatal("zero key")
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, KeyFile): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("key folder holds %d entries, want the key alone", len(entries))
	}
	k2, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k2.PublicKey() != k1.PublicKey() {
		t.Fatal("second start made another key")
	}
}

func TestLoadOrCreateKeyNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, KeyFile)
	// A damaged key is an error, and stays as it is for someone to look at.
	damaged := []byte("not a key\n")
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Fatalf("damaged key: err %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, damaged) {
		t.Fatalf("damaged key file was changed to %q", got)
	}
	// A good key is returned as it is.
	k, _ := GenerateSecretKey()
	if err := os.WriteFile(path, []byte(k.base64()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadOrCreateKey(dir)
	if err != nil || got.PublicKey() != k.PublicKey() {
		t.Fatalf("existing key: %v, same %v", err, got.PublicKey() == k.PublicKey())
	}
}

func TestLoadOrCreateKeyRefusesLoosePermissions(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Log("as root: permission bits are still checked, ownership is ours")
	}
	for _, tc := range []struct {
		name            string
		dirMode, keyMod os.FileMode
		culprit         string
	}{
		{"file readable by others", 0o700, 0o644, KeyFile},
		{"file readable by group", 0o700, 0o640, KeyFile},
		{"folder open to others", 0o755, 0o600, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreateKey(dir + "/k"); err != nil {
				t.Fatal(err)
			}
			dir += "/k"
			before, _ := os.ReadFile(filepath.Join(dir, KeyFile))
			os.Chmod(filepath.Join(dir, KeyFile), tc.keyMod)
			os.Chmod(dir, tc.dirMode)
			_, err := LoadOrCreateKey(dir)
			if err == nil {
				t.Fatal("loose permissions accepted")
			}
			msg := err.Error()
			for _, want := range []string{"refusing", filepath.Join(dir, tc.culprit), "chmod"} {
				if !strings.Contains(msg, strings.TrimSuffix(want, "/")) {
					t.Errorf("message %q does not say %q", msg, want)
				}
			}
			if after, _ := os.ReadFile(filepath.Join(dir, KeyFile)); !bytes.Equal(before, after) {
				t.Error("key changed")
			}
		})
	}
}

// TestSecretKeyNeverPrints: printing, logging or marshaling a secret key, or
// a configuration holding one, shows "(hidden)".
func TestSecretKeyNeverPrints(t *testing.T) {
	k := mustKey(t)
	cfg := Config{Address: testAddrA, Peer: Peer{PublicKey: k.PublicKey(), PresharedKey: &k}}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "key", k, "config", cfg)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "key", k, "psk", &k)
	js, _ := json.Marshal(cfg)
	out := fmt.Sprintf("%v %+v %#v %s %x %q %v %+v", k, k, k, k, k, k, &k, cfg) + logged.String() + string(js)
	if strings.Contains(out, k.base64()) || strings.Contains(out, fmt.Sprintf("%x", k.b[:4])) {
		t.Fatalf("secret key shown in %s", out)
	}
	if !strings.Contains(out, hidden) {
		t.Fatalf("no %s in %s", hidden, out)
	}
	if _, err := ParseSecretKey("x" + k.base64()); err == nil || strings.Contains(err.Error(), k.base64()) {
		t.Fatalf("parse error shows the input: %v", err)
	}
}

func TestKeyText(t *testing.T) {
	k := mustKey(t).PublicKey()
	var back Key
	if err := back.UnmarshalText([]byte(k.String())); err != nil || back != k {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := ParseKey("abc"); err == nil {
		t.Fatal("short key accepted")
	}
}

// TestLoadOrCreateKeyRefusesAnotherOwner: a key file that is not ours (so
// someone else could have written it) is refused. Needs root to chown.
func TestLoadOrCreateKeyRefusesAnotherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the key file to another user")
	}
	dir := filepath.Join(t.TempDir(), "k")
	if _, err := LoadOrCreateKey(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, KeyFile), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Fatalf("key of another user: %v", err)
	}
}

func TestPresharedKeyIsSavedPrivatelyAndRemoved(t *testing.T) {
	dir := t.TempDir() + "/wg"
	if _, err := LoadOrCreateKey(dir); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadPresharedKey(dir); err != nil || k != nil {
		t.Fatalf("no preshared key yet: %v %v", k, err)
	}
	psk, _ := GenerateSecretKey()
	if err := SavePresharedKey(dir, &psk); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir + "/" + PresharedKeyFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	if k, err := LoadPresharedKey(dir); err != nil || k == nil || *k != psk {
		t.Fatalf("read back: %v", err)
	}
	if err := SavePresharedKey(dir, nil); err != nil {
		t.Fatal(err)
	}
	if k, _ := LoadPresharedKey(dir); k != nil {
		t.Fatal("not removed")
	}
}
