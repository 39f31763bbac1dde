//go:build gokrazy

package main

// On the box: /perm is the writable partition, and modalities expect port 104.
const (
	defaultDataDir = "/perm/relais"
	defaultPort    = 104
)
