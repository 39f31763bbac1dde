package peers

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/ssh"
)

// SSHKey makes an ed25519 key pair for a test: the regional team's, or a
// stranger's.
func SSHKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// AuthorizedKey is s's public key as an authorized_keys line, with comment.
func AuthorizedKey(s ssh.Signer, comment string) string {
	line := string(ssh.MarshalAuthorizedKey(s.PublicKey()))
	return line[:len(line)-1] + " " + comment
}
