package cache

import (
	"fmt"
	"os"
	"strconv"
)

// reopen opens the file f is open on again, with a file offset of its own
// (a dup would share f's), through /proc: the spool file may have been
// renamed into the store or removed since, and its path says nothing then.
func reopen(f *os.File) (*os.File, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("reopen spool file: %w", err)
	}
	fd := -1
	if err := sc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return nil, fmt.Errorf("reopen spool file: %w", err)
	}
	g, err := os.Open("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return nil, fmt.Errorf("reopen spool file: %w", err)
	}
	return g, nil
}
