//go:build !unix

package eager

// lockRoot is a no-op where flock(2) is missing: two fetches into one
// destination are then the user's to avoid.
func lockRoot(string) (func(), error) { return func() {}, nil }
