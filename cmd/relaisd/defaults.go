//go:build !gokrazy

package main

const (
	defaultDataDir = "relais-data"
	defaultPort    = 11112
)
