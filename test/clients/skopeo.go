package clients

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Skopeo returns the path of the skopeo binary, or fails the test with the
// command that installs it.
func Skopeo(t testing.TB) string {
	t.Helper()
	return lookPath(t, "skopeo", "apt-get install -y skopeo")
}

// SkopeoCopy runs `skopeo copy ARGS…` (see SkopeoRun), for example
//
//	SkopeoCopy(ctx, t, "--src-tls-verify=false", "docker://127.0.0.1:5000/repo:tag", "oci:"+dir+":tag")
//
// A registry on plain http needs --src-tls-verify=false (skopeo then tries
// https first and falls back to http); a mirror in a registries.conf needs
// `insecure = true` instead (WriteRegistriesConf writes that), passed as
// "--registries-conf", path.
func SkopeoCopy(ctx context.Context, t testing.TB, args ...string) (string, error) {
	t.Helper()
	return SkopeoRun(ctx, t, append([]string{"copy"}, args...)...)
}

// SkopeoRun runs `skopeo --insecure-policy --policy P --registries.d D ARGS…`
// with a permissive policy.json and an empty registries.d in a temporary
// directory, and CONTAINERS_REGISTRIES_CONF and REGISTRY_AUTH_FILE pointing
// at empty files there, so the machine's /etc/containers and credentials do
// not leak into tests (a --registries-conf flag in args still wins). It is
// bounded by ctx and a 2 minute timeout, and returns stdout and stderr
// combined.
func SkopeoRun(ctx context.Context, t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := Skopeo(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	writeFile(t, policy, `{"default":[{"type":"insecureAcceptAnything"}]}`+"\n")
	regConf := filepath.Join(dir, "registries.conf")
	writeFile(t, regConf, "unqualified-search-registries = []\n")
	auth := filepath.Join(dir, "auth.json")
	writeFile(t, auth, "{}\n")
	regD := filepath.Join(dir, "registries.d")
	mkdirAll(t, regD)

	global := []string{"--insecure-policy", "--policy", policy, "--registries.d", regD}
	env := []string{"CONTAINERS_REGISTRIES_CONF=" + regConf, "REGISTRY_AUTH_FILE=" + auth}
	return run(ctx, t, bin, append(global, args...), env)
}

// WriteRegistriesConf writes a containers-registries.conf(5) v2 file that
// sends pulls for each registry prefix to its mirror and returns its path,
// for `skopeo … --registries-conf PATH`. mirrors maps a registry prefix
// ("ghcr.io", "docker.io") to a mirror location without scheme
// ("127.0.0.1:5000/ghcr.io"); every mirror is marked insecure (plain http
// allowed, TLS not verified). Pulls that every mirror fails fall back to the
// prefix registry itself.
func WriteRegistriesConf(t testing.TB, mirrors map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("unqualified-search-registries = []\n")
	prefixes := make([]string, 0, len(mirrors))
	for p := range mirrors {
		prefixes = append(prefixes, p)
	}
	slices.Sort(prefixes)
	for _, p := range prefixes {
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = %s\nlocation = %s\n", strconv.Quote(p), strconv.Quote(p))
		fmt.Fprintf(&b, "\n[[registry.mirror]]\nlocation = %s\ninsecure = true\n", strconv.Quote(mirrors[p]))
	}
	path := filepath.Join(t.TempDir(), "registries.conf")
	writeFile(t, path, b.String())
	return path
}
