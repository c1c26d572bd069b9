package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

// policyCommand validates a policy file: every problem, with its line.
func policyCommand(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: portcullis policy check --config POLICY.yaml")
		return errUsage
	}
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "policy `file` to check")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *path == "" && fs.NArg() == 1 {
		*path = fs.Arg(0)
	}
	if *path == "" {
		fmt.Fprintln(stderr, "usage: portcullis policy check --config POLICY.yaml")
		return errUsage
	}
	pol, err := loadPolicy(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok, %d rules, version %s\n", *path, len(pol.Rules), pol.Version())
	return nil
}
