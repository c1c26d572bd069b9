package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpListsEveryCommand: the top-level help names every command a user
// can run, including the subcommands (it once missed "policy test").
func TestHelpListsEveryCommand(t *testing.T) {
	want := []string{"serve", "scan", "db import", "db update", "db status", "policy check", "policy test",
		"cache verify", "status", "events", "node containerd", "version",
		"quarantine add", "quarantine rm", "quarantine ls", "exception add", "exception rm", "exception ls", "audit ls"}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("portcullis %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr.String())
		}
		for _, name := range want {
			if !strings.Contains(stdout.String(), "portcullis "+name+" ") && !strings.Contains(stdout.String(), "portcullis "+name+"\n") {
				t.Errorf("portcullis %s does not list %q:\n%s", strings.Join(args, " "), name, stdout.String())
			}
		}
		if stderr.Len() != 0 {
			t.Errorf("portcullis %s wrote to stderr: %q", strings.Join(args, " "), stderr.String())
		}
	}
	// And the table has no command the list above forgot.
	for _, c := range commands() {
		found := false
		for _, name := range want {
			found = found || c.name == name
		}
		if !found {
			t.Errorf("command %q is registered but not in this test's list", c.name)
		}
	}
}

// TestEveryCommandAnswersHelp: "COMMAND --help" prints the usage on stdout
// and exits 0 for every command and subcommand, and for command groups.
func TestEveryCommandAnswersHelp(t *testing.T) {
	type tc struct {
		args []string
		want []string // on stdout
	}
	var cases []tc
	for _, c := range commands() {
		words := strings.Fields(c.name)
		cases = append(cases,
			tc{append(append([]string{}, words...), "--help"), []string{"usage:", "portcullis " + c.name}},
			tc{append(append([]string{}, words...), "-h"), []string{"usage:", "portcullis " + c.name}},
			tc{append([]string{"help"}, words...), []string{"usage:", "portcullis " + c.name}})
	}
	cases = append(cases,
		tc{[]string{"db", "--help"}, []string{"portcullis db import", "portcullis db update", "portcullis db status"}},
		tc{[]string{"policy", "-h"}, []string{"portcullis policy check", "portcullis policy test"}},
		tc{[]string{"cache", "help"}, []string{"portcullis cache verify"}},
		tc{[]string{"help", "policy"}, []string{"portcullis policy check", "portcullis policy test"}},
		tc{[]string{"scan", "--help"}, []string{"-archive", "-format"}},
		tc{[]string{"policy", "test", "--help"}, []string{"-config", "-platform", "-exit-code"}},
		tc{[]string{"serve", "--help"}, []string{"-listen", "-upstream"}},
		tc{[]string{"status", "--help"}, []string{"-server", "-fail-on"}},
		tc{[]string{"status", "alpine", "--help"}, []string{"-server"}},
	)
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), c.args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, want 0; stderr %q", code, stderr.String())
			}
			for _, w := range c.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr not empty: %q", stderr.String())
			}
		})
	}
}

// TestUsageErrors: mistakes exit 2 with the usage on stderr, nothing on
// stdout.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // on stderr
	}{
		{nil, "portcullis serve"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"db"}, "portcullis db import"},
		{[]string{"db", "bogus"}, `unknown subcommand "bogus"`},
		{[]string{"policy", "frobnicate"}, "portcullis policy test"},
		{[]string{"scan", "--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"policy", "check", "--no-such-flag"}, "no-such-flag"},
		{[]string{"quarantine", "add"}, "usage: portcullis quarantine add DIGEST --reason R"},
		{[]string{"quarantine", "add", "sha256:a", "sha256:b"}, "usage: portcullis quarantine add"},
		{[]string{"quarantine", "add", "sha256:a", "--reason", "r", "--expires", "soon"}, "want an RFC 3339 time or a duration"},
		{[]string{"exception", "add", "sha256:a", "--reason", "r"}, "--expires is required"},
		{[]string{"exception", "rm"}, "usage: portcullis exception rm ID"},
		{[]string{"audit", "ls", "--kind", "nuke"}, "want one of quarantine, release"},
		{[]string{"quarantine", "frob"}, `unknown subcommand "frob"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty: %q", stdout.String())
			}
		})
	}
}
