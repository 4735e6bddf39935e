package seaweed

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// weed server takes four HTTP ports, P (master) .. P+3 (S3), and each
// service's gRPC port is its HTTP port + 10000.
const (
	portsPerCluster = 4
	grpcOffset      = 10000
	// Bases are drawn from [minBase, maxBase) so that every port, gRPC ones
	// included, stays below Linux's ephemeral range (32768 up): outgoing
	// connections, which take ephemeral ports, then never steal one between
	// the probe and the server's bind.
	minBase = 10000
	maxBase = 32768 - grpcOffset - portsPerCluster
)

var (
	basesMu sync.Mutex
	bases   = map[int]bool{} // handed out in this process: never twice
)

// freeBase returns a P with P..P+3 and P+10000..P+10003 free on 127.0.0.1
// now. Another process can still take one before weed binds it; Start
// retries on a new base when the server dies early.
func freeBase() (int, error) {
	basesMu.Lock()
	defer basesMu.Unlock()
	for range 200 {
		p := minBase + rand.IntN((maxBase-minBase)/portsPerCluster)*portsPerCluster
		if bases[p] || !allFree(p) {
			continue
		}
		bases[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free block of ports P..P+%d and P+%d.. on 127.0.0.1 after 200 tries", portsPerCluster-1, grpcOffset)
}

func allFree(p int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, off := range []int{0, grpcOffset} {
		for i := range portsPerCluster {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+off+i)))
			if err != nil {
				return false
			}
			ls = append(ls, l)
		}
	}
	return true
}
