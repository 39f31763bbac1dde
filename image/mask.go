package image

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/url"
	"sync"
)

// Masked is what a secret becomes in masked output.
const Masked = "********"

// MaskWriter writes to w what is written to it, line by line, with every
// form of a secret replaced by Masked: gok prints its update URL
// (http://gokrazy:PASSWORD@host/) to the terminal and into the build log.
// It is safe for concurrent writes (a command's stdout and stderr).
type MaskWriter struct {
	w     io.Writer
	forms [][]byte

	mu  sync.Mutex
	buf []byte // an unfinished line
}

// NewMaskWriter masks secret (as it is, URL-escaped, and in a Basic
// authorization header) in what goes to w. An empty secret masks nothing.
func NewMaskWriter(w io.Writer, secret string) *MaskWriter {
	m := &MaskWriter{w: w}
	if secret != "" {
		for _, f := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), base64.StdEncoding.EncodeToString([]byte("gokrazy:" + secret))} {
			m.forms = append(m.forms, []byte(f))
		}
	}
	return m
}

func (m *MaskWriter) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.buf = append(m.buf, p...)
	i := bytes.LastIndexByte(m.buf, '\n')
	if i < 0 {
		return len(p), nil
	}
	if _, err := m.w.Write(m.mask(m.buf[:i+1])); err != nil {
		return 0, err
	}
	m.buf = append(m.buf[:0], m.buf[i+1:]...)
	return len(p), nil
}

// Close writes an unfinished last line.
func (m *MaskWriter) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.buf) == 0 {
		return nil
	}
	_, err := m.w.Write(m.mask(m.buf))
	m.buf = m.buf[:0]
	return err
}

func (m *MaskWriter) mask(b []byte) []byte {
	out := bytes.Clone(b)
	for _, f := range m.forms {
		out = bytes.ReplaceAll(out, f, []byte(Masked))
	}
	return out
}
