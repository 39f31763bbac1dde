package main

import (
	"testing"

	"github.com/relais/relais/appliance/consolekeys"
)

// The console believes relaisd's PROXY header and must be reached through
// the tunnel only: an address off loopback is refused.
func TestListenOffLoopbackIsRefused(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:2222": true, "[::1]:2222": true,
		":2222": false, "0.0.0.0:2222": false, "192.168.1.20:2222": false, "localhost:2222": false, "2222": false,
	} {
		if err := consolekeys.CheckListen(addr); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
}
