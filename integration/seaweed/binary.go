package seaweed

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

const (
	// EnvBinary names the weed binary to run; it wins over <repo>/bin/weed.
	EnvBinary = "WEIGHTFS_WEED"
	// EnvRequire, set to 1, turns a missing binary from a skip into a
	// failure: `make test-fleet` has just built it, so missing is a bug.
	EnvRequire = "WEIGHTFS_REQUIRE_WEED"

	mainModule = "github.com/weightfs/weightfs"
	buildHint  = "build it with `make weed`, or run the fleet tests with `make test-fleet`"
)

// Binary returns the weed binary: $WEIGHTFS_WEED if set, else
// <repo>/bin/weed if it exists, else an error that says how to build it.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("$%s=%s: %w; %s", EnvBinary, p, err, buildHint)
		}
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("no SeaweedFS binary: $%s is unset and %v; %s", EnvBinary, err, buildHint)
	}
	p := filepath.Join(root, "bin", "weed")
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("no SeaweedFS binary: $%s is unset and %s: %w; %s", EnvBinary, p, err, buildHint)
	}
	return p, nil
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not executable")
	}
	return nil
}

// repoRoot is the nearest directory, from the working directory up, whose
// go.mod declares the main module (not the tools module, which declares its
// own path). go test runs in the package directory, so this finds the
// checkout the test is built from; the source path is the fallback for a
// test binary run from elsewhere.
func repoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if modulePath(filepath.Join(dir, "go.mod")) == mainModule {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("no checkout of %s above %s", mainModule, strings.Join(starts, " or "))
}

// modulePath is the module line of a go.mod, or "" if there is none.
func modulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

var bannerOnce sync.Once

// Require returns the weed binary, or ends the test: t.Skip, with a banner
// on stderr once per test binary so that a skip is seen even without -v,
// or t.Fatal when $WEIGHTFS_REQUIRE_WEED=1.
func Require(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err == nil {
		return bin
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s=1 and %v", EnvRequire, err)
	}
	bannerOnce.Do(func() {
		line := strings.Repeat("!", 78)
		fmt.Fprintf(os.Stderr, "\n%s\n!!! NO SEAWEEDFS BINARY: EVERY FLEET TEST THAT NEEDS ONE IS SKIPPED\n!!! %v\n%s\n\n", line, err, line)
	})
	t.Skipf("SKIPPED (no SeaweedFS): %v", err)
	return ""
}
