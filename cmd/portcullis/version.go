package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

// Set at build time by the Dockerfile (and release builds):
//
//	go build -ldflags "-X main.buildVersion=v1.2.3 -X main.buildCommit=0123abc" ./cmd/portcullis
//
// They are package-level variables because the linker's -X can only set
// those; nothing assigns them at run time.
var (
	buildVersion string
	buildCommit  string
)

// versionCommand prints the tag and commit the binary was built from.
func versionCommand(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portcullis version: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	fmt.Fprintln(stdout, "portcullis", version())
	return nil
}

// version is "TAG (COMMIT)": the values stamped with -ldflags when there are
// any, else what the Go toolchain recorded (module version, vcs.revision).
func version() string {
	tag, commit := buildVersion, buildCommit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if tag == "" {
			tag = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && commit == "" {
				commit = s.Value
			}
		}
	}
	if tag == "" {
		tag = "unknown"
	}
	if commit == "" {
		return tag
	}
	return tag + " (" + commit + ")"
}
