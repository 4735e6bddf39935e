package main

import (
	"net/http"
	_ "net/http/pprof" // served only when WEIGHTFS_PPROF is set
	"os"
)

// startPprof serves Go's profiler on WEIGHTFS_PPROF (e.g. 127.0.0.1:6060),
// for diagnosing throughput in the field; off unless asked for.
func startPprof() {
	if addr := os.Getenv("WEIGHTFS_PPROF"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
