package peers

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The same peers for programs that are not tests (the benchmark in
// testdata/bench): configuration and environment, with errors returned
// instead of failing a test.

// DCMTKEnv is the environment every DCMTK tool runs with: Debian's build
// leaves Nagle on, which makes small PDUs crawl.
func DCMTKEnv() []string { return append(os.Environ(), "TCP_NODELAY=1") }

// WriteOrthancConfig writes the configuration of an Orthanc keeping its
// storage and index under dir, answering HTTP and DICOM on loopback at the
// given ports, and returns the file's path. Durability is Orthanc's
// default: each file is synced before Success.
func WriteOrthancConfig(dir string, httpPort, dicomPort int, o OrthancOptions) (string, error) {
	if o.MaxPDU == 0 {
		o.MaxPDU = 16384
	}
	mods := map[string]any{}
	for aet, port := range o.Modalities {
		mods[strings.ToLower(aet)] = map[string]any{"AET": aet, "Host": "127.0.0.1", "Port": port, "AllowStorageCommitment": true}
	}
	cfg := map[string]any{
		"Name":                  "relais-test",
		"StorageDirectory":      filepath.Join(dir, "storage"),
		"IndexDirectory":        filepath.Join(dir, "index"),
		"HttpPort":              httpPort,
		"DicomPort":             dicomPort,
		"DicomAet":              "ORTHANC",
		"RemoteAccessAllowed":   false,
		"AuthenticationEnabled": false,
		"DicomCheckCalledAet":   true,
		"DicomAlwaysAllowStore": true,
		"DicomAlwaysAllowEcho":  true,
		"DicomModalities":       mods,
		"MaximumPduLength":      o.MaxPDU,
		"StorageCompression":    false,
		"Plugins":               []string{},
		"DicomScpTimeout":       60,
		"OverwriteInstances":    o.OverwriteInstances,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("write Orthanc configuration: %w", err)
	}
	return path, nil
}
