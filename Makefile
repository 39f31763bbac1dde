# Relais build, test and benchmark entry points.
GO      ?= go
BIN     := bin
# gokrazy builds every binary like this: no cgo, pure-Go resolver and user lookup.
GOKRAZY_TAGS := gokrazy,netgo,osusergo

.PHONY: build test race rules cross bench fuzz run image update image-test

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	$(BIN)/relaisd

# Test harnesses live under testdata, which ./... skips: named here (the
# power-cut filesystem's own tests run with the other packages').
HARNESSES   := ./testdata/dcmgen ./testdata/peers ./testdata/bench ./testdata/powercut ./testdata/storefill
STATICCHECK ?= v0.8.2

# The suite CI runs. Tests that need root or DCMTK/Orthanc say why when they skip.
test:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "not gofmt'd:"; echo "$$out"; exit 1; fi
	$(GO) vet ./... $(HARNESSES)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) -checks inherit,-ST1005 ./... $(HARNESSES)
	$(GO) test -count=1 -timeout 30m -race $(RACE_PKGS)
	$(GO) test -count=1 -timeout 20m -run '^TestPowerCut' ./store
	$(GO) test -count=1 -timeout 20m -run '^(TestSmallDisk|TestFullDisk)' ./appliance
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v -E '/relais/(appliance|store|vpn)(/|$$)') $(HARNESSES)
	@$(MAKE) --no-print-directory rules

# The packages with concurrency run their whole suite under the race
# detector, once; the others without it. The store's power-cut test and the
# appliance's full-disk tests skip under the race detector (ten times
# slower): they run on their own, without.
RACE_PKGS := ./appliance/... ./store ./vpn
race:
	$(GO) test -count=1 -timeout 30m -race $(RACE_PKGS)

# The fleet's alert rules (monitoring/) and their unit tests, with promtool
# from Debian's prometheus package. In CI (.ci/run installs it and sets CI)
# a missing promtool fails; elsewhere it is skipped, saying so.
PROMTOOL ?= promtool
rules:
	@if command -v $(PROMTOOL) >/dev/null; then \
		cd monitoring && $(PROMTOOL) check rules relais.rules.yml && $(PROMTOOL) test rules relais.rules.test.yml; \
	elif [ -n "$$CI" ]; then \
		echo "promtool not installed: .ci/run installs Debian's prometheus" >&2; exit 1; \
	else \
		echo "SKIP alert rule checks: promtool not installed (apt-get install --no-install-recommends prometheus)"; \
	fi

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

# relaisd against storescp and Orthanc on this machine (testdata/bench: about
# 10-12 minutes, the scale scenario included; results, table and relaisd CPU
# profiles in bench-results/), then the packages' micro-benchmarks.
# `go run ./testdata/bench -quick` tries it in a few minutes.
bench:
	$(GO) run ./testdata/bench
	$(GO) test -run '^$$' -bench . -benchtime 3x ./appliance/dimse ./store

# gokrazy images (image/README.md). gok is pinned: the module proxy must serve
# github.com/gokrazy/tools, or point GOK at a gok you built.
GOK_VERSION ?= v0.0.0-20260625065710-db0d662f6299
GOK         ?= $(GO) run github.com/gokrazy/tools/cmd/gok@$(GOK_VERSION)
BOX         ?= pc
# The site's settings (RELAIS_HOSTNAME, RELAIS_HTTP_PASSWORD, RELAIS_UPDATE_HOST):
# image/sites/$(SITE).env, or image/site.env; the environment overrides them.
SITE        ?=
SITE_ENV    ?= $(if $(SITE),image/sites/$(SITE).env,image/site.env)
IMAGE_OUT   ?= image/build
# The disk's size in bytes: /perm takes what the 1.1 GB of system leaves.
IMAGE_BYTES ?= 8000000000
IMAGE_FILE  ?= $(IMAGE_OUT)/relais-$(BOX)$(if $(SITE),-$(SITE)).img
MKFS_EXT4   ?= /sbin/mkfs.ext4
# The checkout the Relais packages are built from (image/test.sh builds bad
# relaisd variants from copies).
CHECKOUT    ?= .
MKINSTANCE  := $(GO) run ./image/cmd/mkinstance -box $(BOX) -site "$(SITE_ENV)" -out $(IMAGE_OUT) -checkout $(CHECKOUT)
# gok prints the update password (in its update URL): its output goes
# through this filter, to the terminal and to the log.
MASKED      := $(GO) run ./image/cmd/masked -site "$(SITE_ENV)"
VERDICT     := $(GO) run ./image/cmd/verdict -site "$(SITE_ENV)" -box $(BOX)
# How long make update waits for the update guard's verdict.
VERDICT_WAIT ?= 15m

# A full disk image with a formatted /perm (gok only prints the mkfs command:
# its offset and size are taken from what it printed).
image:
	@mkdir -p $(IMAGE_OUT)
	@set -e; inst=$$($(MKINSTANCE)); \
	echo "instance $$inst"; \
	$(MASKED) -log $(IMAGE_FILE).log -- $(GOK) -i "$$inst" overwrite --full $(IMAGE_FILE) --target_storage_bytes $(IMAGE_BYTES); \
	set -- $$(sed -n 's/.*mkfs\.ext4 -F -E offset=\([0-9][0-9]*\) .* \([0-9][0-9]*\)$$/\1 \2/p' $(IMAGE_FILE).log); \
	test $$# -eq 2 || { echo "make image: gok printed no mkfs.ext4 command for /perm" >&2; exit 1; }; \
	$(MKFS_EXT4) -q -F -E offset=$$1 $(IMAGE_FILE) $$2; \
	echo "image $(IMAGE_FILE): write it with dd if=$(IMAGE_FILE) of=/dev/sdX bs=4M conv=fsync"

# Update a box through the tunnel (RELAIS_UPDATE_HOST); it reboots into the new
# image, and the update guard (relais-guard) switches back if the image is
# unhealthy. gok reports success as soon as the new image answers: make waits
# for the guard's verdict, and fails (make's exit status 2) with its reason:
# "rolled back: …" after a rollback, or why it cannot tell.
update:
	@mkdir -p $(IMAGE_OUT)
	@set -e; inst=$$($(MKINSTANCE) -update); \
	echo "instance $$inst"; \
	before=$$($(VERDICT) -current); \
	$(MASKED) -log $(IMAGE_OUT)/update-$(BOX)$(if $(SITE),-$(SITE)).log -- $(GOK) -i "$$inst" update; \
	echo "waiting for the update guard's verdict (up to $(VERDICT_WAIT))"; \
	$(VERDICT) -before "$$before" -timeout $(VERDICT_WAIT)

# End to end, where a gok binary is at hand (GOK=/path/to/gok; the module
# proxy does not serve it here): builds a PC image, boots it under QEMU
# (TCG), sends a study, updates it good, then with each bad relaisd (init
# panic, exit 1, no C-ECHO), checking rollback time, the event text, the
# study still there and make update's exit status. Not part of make test.
image-test:
	GOK="$(GOK)" GO="$(GO)" bash image/test.sh
