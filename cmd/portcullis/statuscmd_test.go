package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestFollowEvents(t *testing.T) {
	for _, tc := range []struct {
		name, stream, want string
	}{
		{"verdict", ": portcullis events\n\nevent: verdict\ndata: {\"type\":\"verdict\",\"at\":\"2026-01-02T03:04:05Z\",\"image\":\"docker.io/library/alpine@sha256:aa\",\"digest\":\"sha256:aa\",\"from\":\"allow\",\"to\":\"block\",\"reasons\":[\"VULNERABLE\"]}\n\n",
			"2026-01-02T03:04:05Z verdict docker.io/library/alpine@sha256:aa allow -> block (VULNERABLE)\n"},
		{"first verdict", "data: {\"type\":\"verdict\",\"at\":\"2026-01-02T03:04:05Z\",\"image\":\"x@sha256:aa\",\"to\":\"allow\"}\n\n",
			"2026-01-02T03:04:05Z verdict x@sha256:aa (none) -> allow\n"},
		{"scan", "event: scan\ndata: {\"type\":\"scan\",\"at\":\"2026-01-02T03:04:05Z\",\"image\":\"x@sha256:aa\",\"state\":\"done\",\"findings\":3}\n\n",
			"2026-01-02T03:04:05Z scan x@sha256:aa done, 3 findings\n"},
		{"keep-alives only", ": keep-alive\n\n: keep-alive\n\n", ""},
		{"not JSON, control characters", "event: other\ndata: hello\x1b[2J\n\n", "other hello?[2J\n"},
		{"unterminated event is not printed", "data: {\"type\":\"scan\"}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := followEvents(strings.NewReader(tc.stream), &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Fatalf("got %q, want %q", out.String(), tc.want)
			}
		})
	}
	// A line longer than the bound is an error, not unbounded memory.
	var out bytes.Buffer
	if err := followEvents(strings.NewReader("data: "+strings.Repeat("x", maxEventLine+1)+"\n\n"), &out); err == nil {
		t.Fatal("an over-long line was accepted")
	}
}

func FuzzFollowEvents(f *testing.F) {
	f.Add("event: verdict\ndata: {\"type\":\"verdict\",\"image\":\"a\",\"to\":\"block\"}\n\n")
	f.Add(": c\n\ndata: x\ndata: y\n\n")
	f.Fuzz(func(t *testing.T, stream string) {
		var out bytes.Buffer
		_ = followEvents(strings.NewReader(stream), &out)
		for _, r := range out.String() {
			if r != '\n' && (r < 0x20 || r == 0x7f) {
				t.Fatalf("control character %q printed from %q", r, stream)
			}
		}
	})
}
