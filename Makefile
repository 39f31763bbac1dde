# Relais build, test and benchmark entry points.
GO      ?= go
TAGS    ?=
BIN     := bin
# gokrazy builds every binary like this: no cgo, pure-Go resolver and user lookup.
GOKRAZY_TAGS := gokrazy,netgo,osusergo

.PHONY: build test cross bench fuzz run

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	$(BIN)/relaisd

# The suite CI runs. Tests that need root or DCMTK/Orthanc say why when they skip.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# Every package, for both gokrazy targets, as gokrazy builds them.
cross:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -tags $(GOKRAZY_TAGS) ./...
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -tags $(GOKRAZY_TAGS) ./...

# Short fuzzing of everything that parses bytes from the network.
FUZZTIME ?= 30s
fuzz:
	for f in FuzzReadPDU FuzzDecodeCommand FuzzDecodeDataSet FuzzServeAssociation; do \
		$(GO) test ./appliance/dimse -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./appliance/dimse ./store
