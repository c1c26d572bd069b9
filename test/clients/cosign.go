package clients

import (
	"context"
	"testing"
)

// CosignInstall is how test/run.sh installs the cosign CLI: built from the
// module proxy at the version the project's library is pinned to.
const CosignInstall = `GOBIN="$(go env GOPATH)/bin" go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5`

// CosignRun runs the cosign CLI with a private HOME and TUF cache and every
// non-loopback connection sent to a dead proxy, so a test can prove it
// verified offline: any reach for Rekor, Fulcio or TUF fails instead.
func CosignRun(ctx context.Context, t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := lookPath(t, "cosign", CosignInstall)
	home := t.TempDir()
	env := []string{
		"HOME=" + home, "TUF_ROOT=" + home + "/tuf",
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9",
		"https_proxy=http://127.0.0.1:9", "http_proxy=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost,::1", "no_proxy=127.0.0.1,localhost,::1",
	}
	return run(ctx, t, bin, args, env)
}
