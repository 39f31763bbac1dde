package consolekeys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/relais/relais/testdata/peers"
)

func newKey(t *testing.T) ssh.PublicKey { return peers.SSHKey(t).PublicKey() }

func line(k ssh.PublicKey, comment string) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}

// TestBadLinesAreNamedAndGoodOnesKept: an authorized_keys file with a
// comment, a blank line, a key with options and a broken line gives its
// good keys, and an error naming the bad lines.
func TestBadLinesAreNamedAndGoodOnesKept(t *testing.T) {
	a, b := newKey(t), newKey(t)
	file := "# the regional team\n" + line(a, "team@center") + "\n\n" +
		`from="10.8.0.1" ` + line(b, "x") + "\nssh-ed25519 AAAAnot-base64\n"
	keys, err := Parse([]byte(file))
	if len(keys) != 1 || !Allows(keys, a) || Allows(keys, b) || keys[0].Comment != "team@center" {
		t.Fatalf("keys %v", keys)
	}
	if err == nil || !strings.Contains(err.Error(), "line 4: options from=") || !strings.Contains(err.Error(), "line 5: not a public key line") {
		t.Fatalf("err = %v, want lines 4 and 5 named", err)
	}
	if got := string(Format(keys)); got != line(a, "team@center")+"\n" {
		t.Fatalf("Format = %q", got)
	}
}

func TestParseLineTakesOneKeyAlone(t *testing.T) {
	a := newKey(t)
	k, err := ParseLine("  " + line(a, "team@center") + "\n")
	if err != nil || k.Fingerprint() != ssh.FingerprintSHA256(a) || k.Line() != line(a, "team@center") {
		t.Fatalf("ParseLine = %v %v", k, err)
	}
	for _, bad := range []string{"", "hello", line(a, "x") + "\n" + line(newKey(t), "y"), `command="ls" ` + line(a, "x")} {
		if _, err := ParseLine(bad); err == nil {
			t.Errorf("ParseLine(%q) accepted", bad)
		}
	}
}

// TestTheBoxListWinsOverTheImages: the image's keys count while the data
// folder has no list; once it has one (even empty: every key removed), the
// image's no longer do.
func TestTheBoxListWinsOverTheImages(t *testing.T) {
	dir := t.TempDir()
	site, team := newKey(t), newKey(t)
	f := Files{Box: filepath.Join(dir, File), Image: filepath.Join(dir, "image-keys")}
	if keys, from, err := f.Load(); len(keys) != 0 || from != "" || err != nil {
		t.Fatalf("no files: %v from %q, %v", keys, from, err)
	}
	os.WriteFile(f.Image, []byte(line(site, "site")+"\n"), 0o644)
	if keys, from, err := f.Load(); !Allows(keys, site) || from != f.Image || err != nil {
		t.Fatalf("image only: %v from %q, %v", keys, from, err)
	}
	os.WriteFile(f.Box, []byte(line(team, "team")+"\n"), 0o600)
	if keys, from, err := f.Load(); !Allows(keys, team) || Allows(keys, site) || from != f.Box || err != nil {
		t.Fatalf("both: %v from %q, %v", keys, from, err)
	}
	os.WriteFile(f.Box, nil, 0o600)
	if keys, from, err := f.Load(); len(keys) != 0 || from != f.Box || err != nil {
		t.Fatalf("empty box list: %v from %q, %v", keys, from, err)
	}
}
