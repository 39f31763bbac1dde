package tui

import (
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// TestSilentDaemonShowsNotAnswering: a control socket that accepts
// connections and never replies gives "daemon not answering" on screen,
// and the console still moves between screens and quits.
func TestSilentDaemonShowsNotAnswering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relais.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})

	c := startConsole(t, Options{Socket: path})
	fits(t, c.waitFor("daemon not answering", "1 Dashboard"))
	c.press("3")
	c.waitFor("daemon not answering", "3 Events")
	c.press("4")
	c.waitFor("daemon not answering", "waiting for relaisd's configuration")
}

// TestStoppedDaemonShowsNotAnswering: no daemon at all (no socket) reads
// the same.
func TestStoppedDaemonShowsNotAnswering(t *testing.T) {
	c := startConsole(t, Options{Socket: filepath.Join(t.TempDir(), "relais.sock")})
	c.waitFor("daemon not answering")
}
