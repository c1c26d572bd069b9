// Package browser drives the dashboard (/ui/) in a real, headless Debian
// chromium through the DevTools protocol (chromedp), against the real
// portcullis binary with real pulls behind it: what a person sees, what the
// console says, how the pages behave with a keyboard, at 375 px and in dark
// mode.
package browser

import (
	"os"
	"testing"

	"github.com/portcullis/portcullis/test/harness"
)

// TestMain removes the binaries the tests built once they are done.
func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
