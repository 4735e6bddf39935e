package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/cmd/weightfs/control"
)

// Fails before this change: the remote file name and the error that embeds
// it went to the terminal raw (ESC clears the screen, newline forges a line).
func TestStatusEscapesRemoteNames(t *testing.T) {
	s, addr := serveControl(t)
	s.Ready(control.Model{Prefetch: true, Volumes: []control.Volume{
		{Folder: "llm", Repo: "acme/llm", Kind: "hf", Commit: "0123456789abcdef0123456789abcdef01234567", Files: []control.Stater{
			&fakeObject{st: chunkcache.ObjectStats{Path: "x\x1b[2J\nfake: ok", Size: 1, State: "bad", Error: "GET x\x1b[2J: HTTP 500\u009b"}},
		}},
	}})
	st, _, err := control.NewClient(addr).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\u009b") {
		t.Fatalf("raw control characters in the output:\n%q", out.String())
	}
	want := `"llm/x\x1b[2J\nfake: ok": bad: GET x\x1b[2J: HTTP 500\u009b`
	if !strings.Contains(out.String(), want+"\n") {
		t.Fatalf("output lacks\n%s\ngot:\n%s", want, out.String())
	}
}
