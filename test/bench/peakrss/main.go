// Command peakrss runs a program and reports its peak resident set size,
// for benchmarks. A benchmark cannot read it from its own child: Go starts
// children with vfork, and Linux records the parent's high-water mark as
// the child's when the child execs, so a child of a 500 MB benchmark
// process "peaks" at 500 MB whatever it does. Started from this small
// process instead, the child's ru_maxrss is its own.
//
// The report file gets "pid N" once the program started (for a benchmark
// that reads /proc/N meanwhile) and "maxrss BYTES" once it exited. The
// program shares this process's stdin, stdout and stderr; this process
// exits with the program's exit code.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

func main() {
	report := flag.String("report", "", "file for the program's pid and peak RSS")
	flag.Parse()
	if *report == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: peakrss -report FILE -- PROGRAM [ARG...]")
		os.Exit(2)
	}
	os.Exit(run(*report, flag.Args()))
}

func run(report string, argv []string) int {
	f, err := os.OpenFile(report, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "peakrss: %v\n", err)
		return 1
	}
	defer f.Close()
	// Pdeathsig fires when the thread that started the program ends:
	// locked, that thread lives as long as this process, so a benchmark's
	// timeout that kills this process kills the program too.
	runtime.LockOSThread()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "peakrss: start %s: %v\n", argv[0], err)
		return 1
	}
	if _, err := fmt.Fprintf(f, "pid %d\n", cmd.Process.Pid); err != nil {
		fmt.Fprintf(os.Stderr, "peakrss: write %s: %v\n", report, err)
	}
	_ = cmd.Wait() // the exit code says how it ended
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		fmt.Fprintln(os.Stderr, "peakrss: no resource usage for the program")
		return 1
	}
	if _, err := fmt.Fprintf(f, "maxrss %d\n", ru.Maxrss<<10); err != nil {
		fmt.Fprintf(os.Stderr, "peakrss: write %s: %v\n", report, err)
		return 1
	}
	if code := cmd.ProcessState.ExitCode(); code >= 0 {
		return code
	}
	return 1 // killed by a signal
}
