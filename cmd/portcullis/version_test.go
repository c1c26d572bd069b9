package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string // prefix
		stderrPart string
	}{
		{[]string{"version"}, 0, "portcullis ", ""},
		{[]string{"--version"}, 0, "portcullis ", ""},
		{[]string{"version", "-h"}, 0, "usage:\n  portcullis version", ""},
		{[]string{"version", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"version", "--bogus"}, 2, "", "flag provided but not defined"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.HasPrefix(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderrPart) {
				t.Fatalf("portcullis %q: exit %d, stdout %q, stderr %q; want exit %d, stdout starting %q, stderr containing %q",
					tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderrPart)
			}
			if tc.stdout == "portcullis " && strings.Count(stdout.String(), "\n") != 1 { // the version: one line
				t.Fatalf("portcullis %q printed %q, want one line", tc.args, stdout.String())
			}
		})
	}
}
