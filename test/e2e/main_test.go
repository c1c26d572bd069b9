package e2e

import (
	"os"
	"testing"

	"github.com/portcullis/portcullis/test/harness"
)

// TestMain removes the binaries the tests built once they are done.
func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
