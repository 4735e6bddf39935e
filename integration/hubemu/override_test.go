package hubemu

import (
	"encoding/json"
	"math"
	"net/http"
	"testing"
)

func TestListingOverrideLiesInTheTreeOnly(t *testing.T) {
	var o ListingOverride
	s, files := newTestHub(t, Options{PageSize: 4, Wrap: o.Wrap})
	o.Set("acme/model", Listing{
		Sizes: map[string]int64{"model.safetensors": math.MaxInt64, "config.json": 1 << 60},
		Extra: []ExtraFile{{Path: "nested/ghost.bin", Size: 7, LFS: true}, {Path: "ghost", Size: 3}},
	})
	got := map[string]treeEntry{}
	next := s.URL() + "/api/models/acme/model/tree/main?recursive=true"
	for next != "" {
		resp, body := do(t, http.DefaultClient, "GET", next)
		if resp.StatusCode != 200 {
			t.Fatalf("tree: %d %s", resp.StatusCode, body)
		}
		var page []treeEntry
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			got[e.Path] = e
		}
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			next = l[1 : len(l)-len(`>; rel="next"`)]
		}
	}
	if e := got["model.safetensors"]; e.Size != math.MaxInt64 || e.LFS == nil || e.LFS.Size != math.MaxInt64 {
		t.Errorf("model.safetensors listed as %+v (lfs %+v), want size 2^63-1 in both", e, e.LFS)
	}
	if e := got["config.json"]; e.Size != 1<<60 {
		t.Errorf("config.json size %d, want 2^60", e.Size)
	}
	if e := got["nested/ghost.bin"]; e.Size != 7 || e.LFS == nil {
		t.Errorf("extra LFS file listed as %+v", e)
	}
	if e := got["ghost"]; e.Size != 3 || e.LFS != nil || len(e.OID) != 40 {
		t.Errorf("extra file listed as %+v", e)
	}
	if e := got["small.dat"]; e.Size != int64(len(files["small.dat"])) {
		t.Errorf("untouched file small.dat has size %d", e.Size)
	}
	// Content is the truth: the real config.json, and 404 for a ghost.
	if resp, body := do(t, http.DefaultClient, "GET", s.URL()+"/acme/model/resolve/main/config.json"); resp.StatusCode != 200 || string(body) != string(files["config.json"]) {
		t.Errorf("config.json content: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, http.DefaultClient, "GET", s.URL()+"/acme/model/resolve/main/ghost"); resp.StatusCode != 404 {
		t.Errorf("ghost content: %d, want 404", resp.StatusCode)
	}
	// Other repos are left alone.
	resp, body := do(t, http.DefaultClient, "GET", s.URL()+"/api/models/acme/gated-open/tree/main/nested")
	var page []treeEntry
	json.Unmarshal(body, &page)
	if resp.StatusCode != 200 || len(page) != 2 {
		t.Errorf("untouched repo tree: %d %s", resp.StatusCode, body)
	}
}
