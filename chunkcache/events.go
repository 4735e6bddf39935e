package chunkcache

import "time"

// Events receives what the cache does; all methods must be cheap and safe
// for concurrent use. NopEvents is the default.
type Events interface {
	Fetched(origin string, bytes int64, d time.Duration)
	Hit(tier string) // "memory" or "disk"
	Miss()
	Waited(d time.Duration) // a reader waited on the network this long
	FetchFailed(origin string, err error)
	Verified(path string, ok bool)
	// ServedBad reports a file some of whose bytes were served to readers
	// before the file failed verification: those readers must reload.
	ServedBad(path string)
}

// NopEvents ignores everything.
type NopEvents struct{}

func (NopEvents) Fetched(string, int64, time.Duration) {}
func (NopEvents) Hit(string)                           {}
func (NopEvents) Miss()                                {}
func (NopEvents) Waited(time.Duration)                 {}
func (NopEvents) FetchFailed(string, error)            {}
func (NopEvents) Verified(string, bool)                {}
func (NopEvents) ServedBad(string)                     {}
