//go:build !gokrazy

package main

const (
	defaultDataDir = "relais-data"
)
