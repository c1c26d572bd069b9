package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// TestPolicyCheck: 'policy check' refuses a server configuration with a
// pointed message, and reads the key and trusted-root files a policy
// names, so a missing or broken one is reported before any pull.
func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	goodKey := write("cosign.pub", string(pub))
	notKey := write("notakey.pub", "-----BEGIN NOTHING-----\nAAAA\n-----END NOTHING-----\n")
	goodRoot := write("trusted_root.json", `{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
	badRoot := write("bad_root.json", `{"mediaType": 7}`)
	missing := filepath.Join(dir, "missing.pub")
	keyPolicy := func(keys, root string) string {
		s := "rules:\n  - name: signed\n    signature:\n      required: true\n      keys: [" + keys + "]\n      tlog: false\n"
		if root != "" {
			s += "      trusted_root: " + root + "\n"
		}
		return s
	}

	for _, tc := range []struct {
		name, file string
		code       int
		want       []string // on stdout for 0, else on stderr
	}{
		{"server config naming its policy", "listen: 0.0.0.0:5000\nupstreams:\n  - {name: docker.io, url: \"https://registry-1.docker.io\"}\npolicy: /etc/portcullis/policy.yaml\n", 1,
			[]string{"is a server configuration (it has listen, policy, upstreams), not a policy", "portcullis policy check --config /etc/portcullis/policy.yaml"}},
		{"server config without policy", "data_dir: /var/lib/portcullis\nlog: {level: debug}\n", 1,
			[]string{"is a server configuration (it has data_dir, log), not a policy", "the file the server configuration names under policy:"}},
		{"a policy with a typo is a policy error", "rules:\n  - mdoe: warn\n", 1,
			[]string{`unknown key "mdoe"`}},
		{"a mix is judged as a policy", "listen: x\nrulez: []\n", 1,
			[]string{"policy"}},
		{"good key", keyPolicy(goodKey, ""), 0, []string{"ok, 1 rules"}},
		{"good key and root", keyPolicy(goodKey, goodRoot), 0, []string{"ok, 1 rules"}},
		{"missing key", keyPolicy(goodKey+", "+missing, ""), 1,
			[]string{"rule signed: signature.keys:", missing, "no such file"}},
		{"not a key", keyPolicy(notKey, ""), 1,
			[]string{"rule signed: signature.keys:", notKey + " is not a PEM public key"}},
		{"a directory", keyPolicy(dir, ""), 1,
			[]string{dir + " is not a regular file"}},
		{"missing root", keyPolicy(goodKey, filepath.Join(dir, "nope.json")), 1,
			[]string{"signature.trusted_root:", "nope.json", "no such file"}},
		{"broken root", keyPolicy(goodKey, badRoot), 1,
			[]string{"signature.trusted_root:", badRoot + " is not a sigstore trusted_root.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write("policy-under-test.yaml", tc.file)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"policy", "check", "--config", path}, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout.String(), stderr.String())
			}
			out := stderr.String()
			if tc.code == 0 {
				out = stdout.String()
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.code != 0 && strings.Contains(out, "server configuration") != strings.HasPrefix(tc.name, "server config") {
				t.Errorf("server-configuration diagnosis wrong: %s", out)
			}
		})
	}
}

// FuzzNotAPolicy: any file content gets an answer, never a panic, and a
// diagnosis only for mappings of server configuration keys without rules.
func FuzzNotAPolicy(f *testing.F) {
	for _, s := range []string{"listen: x\n", "rules: []\n", "policy: p.yaml\nlisten: x\n", "- a\n", "a: &a [*a]\n", "{}", "listen: [\n", "<<: {listen: x}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		err := notAPolicy("p.yaml", raw)
		if err != nil && (!strings.HasPrefix(err.Error(), "p.yaml is a server configuration") || bytes.Contains(raw, []byte("rules"))) {
			t.Fatalf("%q: %v", raw, err)
		}
	})
}
