package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one entry of the command line: the help text and the
// dispatch both come from this table, so a command cannot exist without
// being listed. A two-word name ("db import") is a subcommand; its run
// gets the arguments from the subcommand word on (["import", …]), so one
// function may serve several subcommands.
type command struct {
	name    string
	args    string // synopsis after the name, e.g. "[flags] REF"
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists every command; add one line to add a command.
func commands() []command {
	return []command{
		{"serve", "[flags]", "run the mirror (no flags needed: 127.0.0.1:5000, ./portcullis-data)", serveCommand},
		{"scan", "[flags] REF | --archive FILE", "scan an image from any registry (or through a Portcullis), or a docker-archive/OCI layout tarball", scanCommand},
		{"db import", "[--data DIR] PATH…", "import OSV records (directories, .json, all.zip)", dbCommand},
		{"db update", "[--data DIR]", "download the OSV database", dbCommand},
		{"db status", "[--data DIR]", "show the database version and contents", dbCommand},
		{"policy check", "--config POLICY.yaml", "validate a policy file and the key and trusted-root files it names", policyCommand},
		{"policy test", "--config POLICY.yaml [flags] REF", "judge one image under a policy, straight from its registry", policyCommand},
		{"cache verify", "[--data DIR] [--config FILE]", "re-hash the cache, delete what does not match", cacheCommand},
		{"status", "REF|DIGEST --server URL [--token-file F] [--fail-on warn]", "the verdict on an image (exit 0 allow/warn, 1 block, 2 error)", statusCommand},
		{"events", "--server URL [--token-file F]", "follow verdicts and scans as they happen", eventsCommand},
		{"quarantine add", "DIGEST --reason R [--expires RFC3339|DURATION] --server URL [--token-file F]", "block a digest everywhere, now (admin token)", quarantineCommand},
		{"quarantine rm", "DIGEST --server URL [--token-file F]", "lift a quarantine (admin token)", quarantineCommand},
		{"quarantine ls", "--server URL [--token-file F]", "list the quarantines in force", quarantineCommand},
		{"exception add", "DIGEST --reason R --expires RFC3339|DURATION [--repository GLOB] --server URL [--token-file F]", "let a blocked digest through as warn until it expires (admin token)", exceptionCommand},
		{"exception rm", "ID --server URL [--token-file F]", "withdraw an exception (admin token)", exceptionCommand},
		{"exception ls", "--server URL [--token-file F]", "list the exceptions in force", exceptionCommand},
		{"audit ls", "[--since RFC3339|DURATION] [--kind K] --server URL [--token-file F]", "the audit log: quarantines, exceptions, policy reloads", auditCommand},
		{"node containerd", "--mirror URL [--ca-file F] [--certs-dir DIR] [--config FILE] [--watch] [--fail-open]", "make this node's containerd pull every image through the mirror", nodeCommand},
		{"version", "", "print the version (release tag and commit)", versionCommand},
	}
}

// usageColumn is where summaries start in the generated help.
const usageColumn = 41

// writeUsage lists the commands whose name starts with prefix ("" for all).
func writeUsage(w io.Writer, cmds []command, prefix string) {
	for _, c := range cmds {
		if prefix != "" && c.name != prefix && !strings.HasPrefix(c.name, prefix+" ") {
			continue
		}
		line := strings.TrimSpace("  portcullis " + c.name + " " + c.args)
		line = "  " + line
		if len(line) >= usageColumn {
			fmt.Fprintf(w, "%s\n%s%s\n", line, strings.Repeat(" ", usageColumn), c.summary)
		} else {
			fmt.Fprintf(w, "%-*s%s\n", usageColumn, line, c.summary)
		}
	}
}

func topUsage(w io.Writer, cmds []command) {
	fmt.Fprint(w, "portcullis: a pull-through OCI registry mirror\n\nUsage:\n")
	writeUsage(w, cmds, "")
	fmt.Fprint(w, "\nRun 'portcullis COMMAND --help' for its flags.\n")
}

// dispatch finds the command args name and runs it. --help anywhere a
// command parses flags prints its usage on stdout and exits 0.
func dispatch(ctx context.Context, cmds []command, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		topUsage(stderr, cmds)
		return errUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" { // "help db import" is "db import --help"
			return dispatch(ctx, cmds, append(args[1:len(args):len(args)], "--help"), stdout, stderr)
		}
		topUsage(stdout, cmds)
		return nil
	case "--version":
		args = []string{"version"}
	}
	var group bool
	for _, c := range cmds {
		word, sub, two := strings.Cut(c.name, " ")
		if word != args[0] {
			continue
		}
		if !two {
			return runCommand(ctx, c, args[1:], stdout, stderr)
		}
		group = true
		if len(args) > 1 && args[1] == sub {
			return runCommand(ctx, c, args[1:], stdout, stderr)
		}
	}
	if !group {
		fmt.Fprintf(stderr, "portcullis: unknown command %q\n\n", args[0])
		topUsage(stderr, cmds)
		return errUsage
	}
	if len(args) > 1 && isHelpFlag(args[1]) {
		fmt.Fprintln(stdout, "usage:")
		writeUsage(stdout, cmds, args[0])
		return nil
	}
	if len(args) > 1 {
		fmt.Fprintf(stderr, "portcullis %s: unknown subcommand %q\n", args[0], args[1])
	}
	fmt.Fprintln(stderr, "usage:")
	writeUsage(stderr, cmds, args[0])
	return errUsage
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" || s == "help" }

// runCommand runs c; when it stopped at --help, the usage and flags go to
// stdout.
func runCommand(ctx context.Context, c command, args []string, stdout, stderr io.Writer) error {
	err := c.run(ctx, args, stdout, stderr)
	var help helpError
	if errors.As(err, &help) {
		fmt.Fprintln(stdout, "usage:")
		writeUsage(stdout, []command{c}, "")
		if help.flags != "" {
			fmt.Fprintf(stdout, "\nflags:\n%s", help.flags)
		}
		return errHelp
	}
	return err
}

// helpError is what parseFlags returns for -h/--help: the flag defaults,
// for runCommand to print on stdout under the command's synopsis.
type helpError struct{ flags string }

func (helpError) Error() string        { return errHelp.Error() }
func (helpError) Is(target error) bool { return target == errHelp }

var errHelp = errors.New("help")

// parseFlags parses args into fs. On -h/--help nothing is printed (the
// usage goes to stdout, see runCommand); on a bad flag the error and
// fs.Usage go to fs's output (stderr).
func parseFlags(fs *flag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {}
	errOut := fs.Output()
	var msg strings.Builder
	fs.SetOutput(&msg)
	err := fs.Parse(args)
	fs.SetOutput(errOut)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		var defaults strings.Builder
		fs.SetOutput(&defaults)
		fs.PrintDefaults()
		fs.SetOutput(errOut)
		return helpError{flags: defaults.String()}
	case err != nil:
		fmt.Fprint(errOut, msg.String())
		fs.Usage()
		return errUsage
	}
	return nil
}

func serveCommand(ctx context.Context, args []string, _, stderr io.Writer) error {
	return serve(ctx, args, stderr)
}
