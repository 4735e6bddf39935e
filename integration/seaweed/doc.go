// Package seaweed runs a real distributed store for the fleet tests: one
// SeaweedFS `weed server` (master, volume, filer and S3 gateway in one
// process) on 127.0.0.1, and `weed mount` FUSE clients of its filer. Two
// mounts of one Cluster are two nodes sharing one filesystem, with the weak
// cross-node exclusivity of a real DFS (see /work/shared/reference/fleet.md,
// "SeaweedFS here"): O_EXCL, link() and flock are not reliable leases there,
// while the S3 API's conditional PUT (If-None-Match: *) is.
//
// The binary is not part of this module's graph: `make weed` builds it from
// the pin in integration/tools/seaweedfs into bin/weed, and $WEIGHTFS_WEED
// overrides the path. Without it every test that calls Start skips, loudly;
// with WEIGHTFS_REQUIRE_WEED=1 (as `make test-fleet` sets) it fails instead.
//
// Everything binds to 127.0.0.1 and the server's telemetry is off: no test
// reaches the network beyond loopback.
package seaweed
