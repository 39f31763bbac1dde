package bootcount

import (
	"os"
	"path/filepath"
	"testing"
)

func TestImageIsRootPartitionAndSBOMHash(t *testing.T) {
	dir := t.TempDir()
	sbom := filepath.Join(dir, "sbom.json")
	if err := os.WriteFile(sbom, []byte(`{"sbom_hash":"0f1e2d","sbom":{"config_hash":{}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cmdline, root string }{
		{"console=ttyS0,115200 root=PARTUUID=60c24cc1-f3f9-427a-8199-2e18c40c0001/PARTNROFF=2 init=/gokrazy/init rootwait\n", "PARTUUID=60c24cc1-f3f9-427a-8199-2e18c40c0001/PARTNROFF=2"},
		{"root=PARTUUID=2e18c40c-03 rootdelay=0", "PARTUUID=2e18c40c-03"},
		{"dwc_otg.fiq_fsm_enable=0 root=/dev/mmcblk0p2 init=/gokrazy/init", "/dev/mmcblk0p2"},
	} {
		cmdline := filepath.Join(dir, "cmdline")
		if err := os.WriteFile(cmdline, []byte(tc.cmdline), 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := readImage(cmdline, sbom)
		if err != nil {
			t.Fatal(err)
		}
		if want := (Image{Root: tc.root, SBOM: "0f1e2d"}); img != want {
			t.Errorf("%q: %+v, want %+v", tc.cmdline, img, want)
		}
	}
}

func TestImageOutsideGokrazyIsAnError(t *testing.T) {
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	if err := os.WriteFile(cmdline, []byte("BOOT_IMAGE=/vmlinuz root=UUID=1234 ro quiet"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readImage(cmdline, filepath.Join(dir, "sbom.json")); err == nil {
		t.Fatal("no SBOM, yet an image")
	}
}
