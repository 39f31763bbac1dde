// The gokrazy system packages, kernels and firmware Relais images are built
// with, pinned (versions seen working together; see image/README.md to bump
// them). make image and make update copy this file to the instance's
// builddir/go.mod, where gok looks for the packages that are not Relais's.
module gokrazy/build/relais

go 1.26

require (
	github.com/gokrazy/firmware v0.0.0-20260522070551-527ce0ed43cf
	github.com/gokrazy/gokrazy v0.0.0-20260418085648-c38c3134b8a7
	github.com/gokrazy/kernel.amd64 v0.0.0-20260705070735-de680abf072b
	github.com/gokrazy/kernel.rpi v0.0.0-20251127164438-9778ec0261de
	github.com/gokrazy/rpi-eeprom v0.0.0-20260518070910-95f7328a8228
)
