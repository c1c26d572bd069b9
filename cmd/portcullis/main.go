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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, commands(), args, stdout, stderr)
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
