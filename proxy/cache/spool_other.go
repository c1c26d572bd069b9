//go:build !linux

package cache

import (
	"errors"
	"os"
)

// reopen has no way to open a possibly renamed or removed file again here;
// readers of a download copy through Read instead.
func reopen(*os.File) (*os.File, error) {
	return nil, errors.New("reopen spool file: not supported on this platform")
}
