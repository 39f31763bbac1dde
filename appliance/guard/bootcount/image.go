package bootcount

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
)

// Where gokrazy tells which image is running. /proc/cmdline names the root
// partition the boot loader started (gokrazy's /update/switch rewrites that
// root= in the boot partition's cmdline.txt); the packer writes the SBOM, with
// a hash over the instance config and every binary's build ID, into the root
// file system of each image it builds.
const (
	CmdlinePath = "/proc/cmdline"
	SBOMPath    = "/etc/gokrazy/sbom.json"
)

// Image identifies a booted system image: which of the two root partitions,
// and what was built into it. Two boots run the same image when both are
// equal; a gok update writes the inactive partition and switches to it, so
// after an update reboot at least Root differs from the image before.
type Image struct {
	// Root is the root= argument of the kernel command line, e.g.
	// PARTUUID=2e18c40c-…/PARTNROFF=1 (GPT) or PARTUUID=2e18c40c-03 (MBR).
	Root string `json:"root"`
	// SBOM is the sbom_hash gokrazy's packer computed for the image.
	SBOM string `json:"sbom"`
}

func (i Image) String() string { return fmt.Sprintf("root=%s sbom=%.12s", i.Root, i.SBOM) }

// IsZero reports whether i identifies nothing.
func (i Image) IsZero() bool { return i == Image{} }

var rootArg = regexp.MustCompile(`(?:^|\s)root=(\S+)`)

// RunningImage identifies the image this process runs on, from gokrazy's
// files. It fails outside gokrazy (no SBOM).
func RunningImage() (Image, error) { return readImage(CmdlinePath, SBOMPath) }

func readImage(cmdlinePath, sbomPath string) (Image, error) {
	cmdline, err := os.ReadFile(cmdlinePath)
	if err != nil {
		return Image{}, fmt.Errorf("identify image: %w", err)
	}
	m := rootArg.FindSubmatch(cmdline)
	if m == nil {
		return Image{}, fmt.Errorf("identify image: no root= in %s", cmdlinePath)
	}
	b, err := os.ReadFile(sbomPath)
	if err != nil {
		return Image{}, fmt.Errorf("identify image: %w", err)
	}
	var sbom struct {
		Hash string `json:"sbom_hash"`
	}
	if err := json.Unmarshal(b, &sbom); err != nil {
		return Image{}, fmt.Errorf("identify image: %s: %w", sbomPath, err)
	}
	if sbom.Hash == "" {
		return Image{}, errors.New("identify image: " + sbomPath + " has no sbom_hash")
	}
	return Image{Root: string(m[1]), SBOM: sbom.Hash}, nil
}

// Short names the image as gokrazy's status page does: the first 10
// characters of its SBOM hash.
func (i Image) Short() string {
	if len(i.SBOM) > 10 {
		return i.SBOM[:10]
	}
	return i.SBOM
}
