# weightfs — see README.md. Every target works on a fresh machine: `deps`
# installs what is missing (Go modules, fuse3).
GO      ?= go
BIN     := bin/weightfs
PKGS    := ./...
export GOFLAGS := -buildvcs=false

.PHONY: all build deps test test-unit test-integration demo bench vet clean fuzz soak

all: build

# The version `weightfs --version` and /status report: the nearest tag and
# commit (-dirty with local changes), or "dev" outside a git checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/weightfs

# fuse3 brings fusermount3 for non-root mounts; tests run as root and use
# DirectMount, but the unmount path and users' machines need it.
deps:
	@command -v fusermount3 >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3) >/dev/null 2>&1 || echo "warning: could not install fuse3"; \
	  else echo "warning: fusermount3 missing; install fuse3"; fi; }
	$(GO) mod download

vet:
	$(GO) vet $(PKGS)

# Every fuzz target for FUZZTIME (go test fuzzes one target per run). A
# crasher fails the run and is written to <package>/testdata/fuzz/<target>/:
# commit it there, as a seed, with the fix. Longer: make fuzz FUZZTIME=2m.
# The default is a count (a few seconds each on 2 cores), not a duration: in
# Go 1.26 a duration can end in a spurious "context deadline exceeded" FAIL
# with no crasher (golang/go#75804), most often on a loaded machine.
FUZZTIME ?= 20000x
FUZZ := ./chunkcache:FuzzSafetensorsHeader ./chunkcache:FuzzSafetensorsIndex \
	./fetch:FuzzValidPath ./fetch:FuzzCheckManifest ./fetch:FuzzContentRange \
	./fetch/config:FuzzParseConfig ./fetch/config:FuzzMatch \
	./fetch/hf:FuzzTreeListing ./fetch/hf:FuzzNextLink ./fetch/hf:FuzzHubContentRange \
	./fetch/s3src:FuzzS3Object ./fetch/s3src:FuzzS3ContentRange ./fetch/gcssrc:FuzzGCSObject \
	./fetch/objstore:FuzzRelPath ./chunkcache/shared/bucket:FuzzParseBucketSpec

fuzz:
	@for t in $(FUZZ); do pkg=$${t%%:*}; fn=$${t##*:}; echo "fuzz $$pkg $$fn $(FUZZTIME)"; \
	  out=$$($(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 200x $$pkg 2>&1) || { echo "$$out"; exit 1; }; done

# Unit tests, then the real-mount integration tests (root + /dev/fuse); the
# fuzz targets run briefly first.
test: deps build vet fuzz
	$(GO) test -count=1 -timeout 15m $(PKGS)
	$(GO) build -race -o bin/weightfs-race ./cmd/weightfs
	WEIGHTFS_SOAK=15s WEIGHTFS_SOAK_BIN=$(CURDIR)/bin/weightfs-race $(GO) test -race -count=1 -timeout 5m -run '^TestSoak$$' ./integration/soak/

# The soak (RELIABILITY.md): a 512 MiB, 4-shard model behind a Hub emulator
# that resets, 503s and flips bytes; 48 random pread readers and 4 mmap
# loaders for 2 min per mode (default, then --strict-verify); then wait and
# sha256 of every file. Exits 1 when a check fails. `make test` runs a
# 64 MiB, 2 x 15 s version with -race (last two lines of test).
# SOAKFLAGS passes flags, e.g. SOAKFLAGS="-duration 10m -flip 0.3".
soak: deps build
	$(GO) run ./integration/cmd/soak -bin $(BIN) $(SOAKFLAGS)

# The README's first command: Hub emulator + generated ~1 GiB model, mount,
# list, first tensor, full read, sha256 of every file, unmount.
demo: deps build
	$(GO) run ./integration/cmd/demo -bin $(BIN)

# Benchmarks (not part of test): weightfs against download-then-load, rclone
# mount and s3fs on a throttled origin; writes BENCHMARKS.md. Installs Debian's
# rclone and s3fs when missing (root); without them those rows show the error.
# BENCHFLAGS passes flags, e.g. BENCHFLAGS=-quick for a fast sanity run.
bench: deps build
	@for t in rclone s3fs; do command -v $$t >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone s3fs) >/dev/null 2>&1 || echo "warning: could not install rclone/s3fs"; \
	  else echo "warning: $$t missing; install rclone and s3fs"; fi; break; }; done
	$(GO) run ./integration/cmd/bench -bin $(BIN) $(BENCHFLAGS)
	WEIGHTFS_FLEET_BENCH=$(CURDIR)/BENCHMARKS.md $(GO) test -count=1 -timeout 10m -run '^TestFleetBench$$' -v ./integration/ | grep -v level=

# SeaweedFS for the fleet tests (integration/tools/seaweedfs/README.md): a
# ~230 MB binary that takes 5-10 min to build on 2 cores, so bin/weed is a file
# target, rebuilt only when it is missing or the pin (go.mod/go.sum) changes.
# The touch: go build leaves an up-to-date binary's mtime alone.
WEED     := bin/weed
WEED_MOD := integration/tools/seaweedfs
.PHONY: weed test-fleet
weed: $(WEED)
$(WEED): $(WEED_MOD)/go.mod $(WEED_MOD)/go.sum
	cd $(WEED_MOD) && $(GO) build -o $(CURDIR)/$(WEED) github.com/seaweedfs/seaweedfs/weed
	@touch $@

# The fleet tests: a real SeaweedFS (master, volume, filer, S3 in one process,
# on 127.0.0.1) and weed mount FUSE clients as nodes. Here the binary is
# required: a missing one fails instead of skipping.
test-fleet: deps build weed
	WEIGHTFS_WEED=$(CURDIR)/bin/weed WEIGHTFS_REQUIRE_WEED=1 $(GO) test -count=1 -timeout 20m -run 'Fleet' ./integration/...

clean:
	rm -rf bin
