// Command portcullis is a pull-through registry mirror that verifies and
// caches what it serves. main is wiring only.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `portcullis: a pull-through OCI registry mirror

Usage:
  portcullis serve [flags]               run the mirror (no flags needed: 127.0.0.1:5000, ./portcullis-data)
  portcullis scan [flags] REF            scan an image from any registry (or through a Portcullis)
  portcullis scan [flags] --archive FILE scan a docker-archive or OCI layout tarball
  portcullis db import [--data DIR] PATH…  import OSV records (directories, .json, all.zip)
  portcullis db update [--data DIR]      download the OSV database
  portcullis db status [--data DIR]      show the database version and contents
  portcullis policy check --config FILE  validate a policy file
  portcullis cache verify [--data DIR]   re-hash the cache, delete what does not match
  portcullis status REF|DIGEST --server URL [--token-file F] [--fail-on warn]
                                         the verdict on an image (exit 0 allow/warn, 1 block, 2 error)
  portcullis events --server URL [--token-file F]  follow verdicts and scans as they happen
  portcullis version                     print the version

Every command takes --data DIR; run 'portcullis COMMAND -h' for its flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr)
	case "scan":
		err = scanCommand(ctx, args[1:], stdout, stderr)
	case "db":
		err = dbCommand(ctx, args[1:], stdout, stderr)
	case "policy":
		err = policyCommand(ctx, args[1:], stdout, stderr)
	case "cache":
		err = cacheCommand(ctx, args[1:], stdout, stderr)
	case "status":
		err = statusCommand(ctx, args[1:], stdout, stderr)
	case "events":
		err = eventsCommand(ctx, args[1:], stdout, stderr)
	case "node":
		err = nodeCommand(ctx, args[1:], stderr)
	case "version", "--version":
		err = versionCommand(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "portcullis: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var found errFindings
	var exit errExit
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.As(err, &found):
		return found.code
	case errors.As(err, &exit):
		if exit.err != nil {
			fmt.Fprintln(stderr, "portcullis:", exit.err)
		}
		return exit.code
	}
	fmt.Fprintln(stderr, "portcullis:", err)
	return 1
}
