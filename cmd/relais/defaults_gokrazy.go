//go:build gokrazy

package main

// On the box: relaisd keeps its data in /perm/relais.
const (
	defaultDataDir = "/perm/relais"
)
