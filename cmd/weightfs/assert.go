package main

import (
	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/cmd/weightfs/control"
	wfs "github.com/weightfs/weightfs/fs"
)

// Compile-time checks of the interfaces the layers match by name or probe
// for, here where both sides are visible: a renamed method must fail the
// build, not silently turn a feature off (fs evicts the kernel's pages of a
// file that failed verification only if its Content is a DropNotifier).
var (
	_ wfs.Opener        = (*opener)(nil)
	_ wfs.Content       = (*chunkcache.Object)(nil)
	_ wfs.DropNotifier  = (*chunkcache.Object)(nil)
	_ wfs.Pinner        = (*chunkcache.Object)(nil)
	_ control.Stater    = (*chunkcache.Object)(nil)
	_ control.Stater    = unopened{}
	_ chunkcache.Events = (*control.Metrics)(nil)
	_ chunkcache.Events = chunkcache.NopEvents{}
)
