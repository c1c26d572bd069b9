package harness

import (
	"os"
	"testing"
)

// TestMain removes the binaries the tests built once they are done.
func TestMain(m *testing.M) { os.Exit(Main(m)) }
