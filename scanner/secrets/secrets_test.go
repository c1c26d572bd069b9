package secrets

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// randomBase62 returns n random base62 characters, as token issuers make
// them.
func randomBase62(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		v, err := rand.Int(rand.Reader, big.NewInt(62))
		if err != nil {
			t.Fatal(err)
		}
		b[i] = base62Digits[v.Int64()]
	}
	return string(b)
}

// githubToken makes a token in GitHub's real format: prefix, 30 random
// characters and their CRC-32 checksum in base62.
func githubToken(t testing.TB, prefix string) string {
	random := randomBase62(t, 30)
	return prefix + random + string(githubChecksum([]byte(random)))
}

func pemKey(t testing.TB, typ string, der []byte, headers map[string]string) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der}))
}

type keys struct {
	rsaPKCS1, ecSEC1, pkcs8, openssh, opensshEncrypted, rsaEncrypted, pkcs8Encrypted, publicKey, certificate string
}

func makeKeys(t testing.TB) keys {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // test key
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var k keys
	k.rsaPKCS1 = pemKey(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), nil)
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	k.ecSEC1 = pemKey(t, "EC PRIVATE KEY", ecDER, nil)
	p8, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	k.pkcs8 = pemKey(t, "PRIVATE KEY", p8, nil)
	b, err := ssh.MarshalPrivateKey(edKey, "test")
	if err != nil {
		t.Fatal(err)
	}
	k.openssh = string(pem.EncodeToMemory(b))
	b, err = ssh.MarshalPrivateKeyWithPassphrase(edKey, "test", []byte("passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	k.opensshEncrypted = string(pem.EncodeToMemory(b))
	//lint:ignore SA1019 legacy PEM encryption is exactly what the test needs
	block, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), []byte("pw"), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	k.rsaEncrypted = string(pem.EncodeToMemory(block))
	// An encrypted PKCS#8 key is a DER SEQUENCE too: only its PEM type says
	// it is encrypted.
	k.pkcs8Encrypted = pemKey(t, "ENCRYPTED PRIVATE KEY", p8, nil)
	pub, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	k.publicKey = pemKey(t, "PUBLIC KEY", pub, nil) + pemKey(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), nil)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	k.certificate = pemKey(t, "CERTIFICATE", cert, nil)
	return k
}

func scanString(t *testing.T, s string, o Options) []Match {
	t.Helper()
	m, truncated, err := Scan(strings.NewReader(s), o)
	if err != nil {
		t.Fatal(err)
	}
	if truncated {
		t.Fatalf("truncated with %d matches", len(m))
	}
	return m
}

func TestDetectsEachKind(t *testing.T) {
	k := makeKeys(t)
	ghp := githubToken(t, "ghp_")
	tests := []struct {
		name, kind, text, file string
		line                   int
	}{
		{"rsa pkcs1", KindPrivateKey, "x\n" + k.rsaPKCS1, "", 2},
		{"ec sec1", KindPrivateKey, k.ecSEC1, "", 1},
		{"pkcs8", KindPrivateKey, k.pkcs8, "", 1},
		{"openssh unencrypted", KindPrivateKey, k.openssh, "", 1},
		{"aws akia", KindAWSAccessKey, "a\nb\nAWS_ACCESS_KEY_ID=AKIA" + "Q3EGRIA7MZK4WX2D\n", "", 3},
		{"aws asia", KindAWSAccessKey, "id: ASIA" + "Q3EGRIA7MZK4WX2D", "", 1},
		{"github ghp", KindGitHubToken, "token=" + ghp, "", 1},
		{"github gho", KindGitHubToken, githubToken(t, "gho_"), "", 1},
		{"github ghu", KindGitHubToken, githubToken(t, "ghu_"), "", 1},
		{"github ghs", KindGitHubToken, githubToken(t, "ghs_"), "", 1},
		{"github ghr", KindGitHubToken, githubToken(t, "ghr_"), "", 1},
		{"github fine-grained", KindGitHubToken, "github_pat_" + randomBase62(t, 22) + "_" + randomBase62(t, 59), "", 1},
		{"gitlab", KindGitLabToken, "GITLAB_TOKEN=glpat-" + randomBase62(t, 20), "", 1},
		{"slack bot", KindSlackToken, "xoxb-" + "1234567890-1234567890123-" + randomBase62(t, 24), "", 1},
		{"slack user", KindSlackToken, "xoxp-1234567890-1234567890-1234567890123-" + randomBase62(t, 32), "", 1},
		{"slack webhook", KindSlackWebhook, "url: https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFG/" + randomBase62(t, 24), "", 1},
		{"google api key", KindGoogleAPIKey, "key=AIza" + randomBase62(t, 35), "", 1},
		{"gcp service account", KindGCPServiceAccount, "{\n  \"type\": \"service_account\",\n  \"project_id\": \"p\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n" +
			strings.ReplaceAll(strings.TrimPrefix(k.pkcs8, "-----BEGIN PRIVATE KEY-----\n"), "\n", "\\n") + "\"\n}\n", "", 2},
		{"stripe secret", KindStripeKey, "sk_live_" + randomBase62(t, 24), "", 1},
		{"stripe restricted", KindStripeKey, "rk_live_" + randomBase62(t, 99), "", 1},
		{"npm", KindNPMToken, "//registry.npmjs.org/:_authToken=npm_" + randomBase62(t, 36), "", 1},
		{"pypi", KindPyPIToken, "password = pypi-AgEIcHlwaS5vcmc" + randomBase62(t, 70), "", 1},
		{"docker auth", KindDockerAuth, "{\n \"auths\": {\n  \"registry.example.com\": {\n   \"auth\": \"" +
			base64.StdEncoding.EncodeToString([]byte("user:s3cretpw")) + "\"\n  }\n }\n}\n", "/root/.docker/config.json", 4},
		{"docker identitytoken", KindDockerAuth, `{"auths":{"r.io":{"identitytoken":"` + randomBase62(t, 40) + `"}}}`, "/home/u/.docker/config.json", 1},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.kind] = true
	}
	for _, k := range Kinds() {
		if !covered[k] {
			t.Errorf("kind %s has no test", k)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scanString(t, tt.text, Options{Name: tt.file})
			if len(got) != 1 || got[0].Kind != tt.kind || got[0].Line != tt.line {
				t.Fatalf("got %+v, want one %s at line %d", got, tt.kind, tt.line)
			}
			if !strings.HasPrefix(got[0].Fingerprint, "sha256:") || len(got[0].Fingerprint) != 71 {
				t.Errorf("fingerprint %q", got[0].Fingerprint)
			}
			if len(got[0].Prefix) > 4 {
				t.Errorf("prefix %q longer than four characters", got[0].Prefix)
			}
		})
	}
}

func TestNotSecrets(t *testing.T) {
	k := makeKeys(t)
	ghp := githubToken(t, "ghp_")
	wrong := ghp[:len(ghp)-1] + string(base62Digits[(strings.IndexByte(base62Digits, ghp[len(ghp)-1])+1)%62])
	tests := []struct{ name, text, file string }{
		{"openssh encrypted", k.opensshEncrypted, ""},
		{"rsa proc-type encrypted", k.rsaEncrypted, ""},
		{"pkcs8 encrypted", k.pkcs8Encrypted, ""},
		{"public keys", k.publicKey, ""},
		{"certificate", k.certificate, ""},
		{"key template", "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n", ""},
		{"aws documentation example", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", ""},
		{"github wrong checksum", "token=" + wrong, ""},
		{"slack placeholder", "SLACK_TOKEN=xoxb-your-token-here", ""},
		{"docker auths outside config.json", `{"auths":{"r.io":{"auth":"dXNlcjpwYXNzd29yZA=="}}}`, "/app/settings.json"},
		{"docker empty auths", `{"auths":{"r.io":{}},"credsStore":"desktop"}`, "/root/.docker/config.json"},
		{"gcp without key", `{"type": "service_account", "client_email": "a@b"}`, ""},
		{"plain text", "nothing to see here\nghp_ is a prefix\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scanString(t, tt.text, Options{Name: tt.file}); len(got) != 0 {
				t.Fatalf("got %+v, want nothing", got)
			}
		})
	}
}

func TestBinaryOnlyPrivateKeys(t *testing.T) {
	k := makeKeys(t)
	text := "\x00\x01" + k.rsaPKCS1 + "\nAKIA" + "Q3EGRIA7MZK4WX2D\n"
	got := scanString(t, text, Options{Binary: true})
	if len(got) != 1 || got[0].Kind != KindPrivateKey {
		t.Fatalf("got %+v, want only the private key", got)
	}
	if !IsBinary([]byte(text)) || IsBinary([]byte(k.rsaPKCS1)) {
		t.Fatal("IsBinary")
	}
}

func TestFingerprint(t *testing.T) {
	tok := githubToken(t, "ghp_")
	a := scanString(t, tok, Options{})
	b := scanString(t, "other text\n"+tok, Options{Salt: "x"})
	if a[0].Fingerprint != b[0].Fingerprint {
		t.Fatal("same token, different fingerprints")
	}
	if a[0].Prefix != "ghp_" {
		t.Fatalf("prefix %q", a[0].Prefix)
	}
	auth := `{"auths":{"r":{"auth":"dXNlcjpwdw=="}}}`
	c := scanString(t, auth, Options{Name: "config.json", Salt: "layer1"})
	d := scanString(t, auth, Options{Name: "config.json", Salt: "layer2"})
	if c[0].Fingerprint == d[0].Fingerprint {
		t.Fatal("docker-auth fingerprint not salted")
	}
}

func TestBoundPerFile(t *testing.T) {
	var sb strings.Builder
	for range 150 {
		sb.WriteString("AWS=AKIA" + strings.ToUpper(randomBase62(t, 0)) + "Q3EGRIA7MZK4WX2D\n")
	}
	m, truncated, err := Scan(strings.NewReader(sb.String()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !truncated || len(m) != DefaultMaxMatches {
		t.Fatalf("%d matches, truncated %v; want %d, true", len(m), truncated, DefaultMaxMatches)
	}
	if m[99].Line != 100 {
		t.Fatalf("last line %d", m[99].Line)
	}
}

// TestAcrossWindows puts secrets at every place relative to the window
// edges: each is found once, on its line.
func TestAcrossWindows(t *testing.T) {
	k := makeKeys(t)
	tok := githubToken(t, "ghp_")
	for _, at := range []int{0, windowSize - 10, windowSize - 1, windowSize, windowSize + maxMatchLen - 5, 2*windowSize - 3, 3 * windowSize} {
		for _, secret := range []string{tok, k.rsaPKCS1} {
			text := strings.Repeat("a", at) + "\n" + secret + "\n" + strings.Repeat("b\n", 10)
			got := scanString(t, text, Options{})
			if len(got) != 1 || got[0].Line != 2 {
				t.Fatalf("at %d: got %+v, want one match on line 2", at, got)
			}
		}
	}
}

// endless is an io.Reader of n bytes of one long line with no secret.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), e.n)]
	for i := range p {
		p[i] = "AIzaghp_xox-----BEGIN "[i%22]
	}
	e.n -= int64(len(p))
	return len(p), nil
}

// TestLongLineBoundedMemory scans 256 MiB of a single line full of
// keywords: what Scan allocates must not grow with the input.
func TestLongLineBoundedMemory(t *testing.T) {
	measure := func(n int64) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if _, _, err := Scan(&endless{n: n}, Options{}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := measure(1<<20), measure(256<<20)
	if large > 1<<20 || large > 2*small+(256<<10) {
		t.Fatalf("scanning 256 MiB allocated %d bytes (1 MiB: %d)", large, small)
	}
}

func FuzzScan(f *testing.F) {
	k := makeKeys(f)
	for _, s := range []string{k.rsaPKCS1, k.openssh, k.opensshEncrypted, githubToken(f, "ghp_"), "xoxb-1234567890-abcdefghij", `{"auths":{"a":{"auth":"abcd"}}}`, `{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----` + strings.Repeat("A", 70) + `"}`} {
		f.Add([]byte(s), false, int64(len(s)))
	}
	f.Fuzz(func(t *testing.T, data []byte, binary bool, size int64) {
		// size is a hint that may be wrong.
		m, truncated, err := Scan(bytes.NewReader(data), Options{Name: "config.json", Binary: binary, MaxMatches: 5, Size: size})
		if err != nil {
			t.Fatal(err)
		}
		if len(m) > 5 || (truncated && len(m) != 5) {
			t.Fatalf("%d matches, truncated %v", len(m), truncated)
		}
		lines := bytes.Count(data, []byte{'\n'}) + 1
		for _, x := range m {
			if x.Line < 1 || x.Line > lines || !strings.HasPrefix(x.Fingerprint, "sha256:") || len(x.Prefix) > 4 {
				t.Fatalf("bad match %+v", x)
			}
			if x.Kind != KindDockerAuth && len(x.Prefix) == 4 && !bytes.Contains(data, []byte(x.Prefix)) {
				t.Fatalf("prefix %q not in the input", x.Prefix)
			}
		}
		_ = fmt.Sprint(m)
	})
}

// TestSizeHint: a wrong size hint (too small) costs a larger buffer, not a
// missed secret or a hang.
func TestSizeHint(t *testing.T) {
	tok := githubToken(t, "ghp_")
	text := strings.Repeat("x\n", 50_000) + tok + "\n"
	for _, size := range []int64{0, 1, 100, int64(len(text)), int64(len(text)) + 10, 1 << 30} {
		m, _, err := Scan(strings.NewReader(text), Options{Size: size})
		if err != nil || len(m) != 1 || m[0].Line != 50_001 {
			t.Fatalf("size %d: %+v %v", size, m, err)
		}
	}
}

// TestSmallFileAllocation: a small file with its size known costs about its
// size, not a whole window.
func TestSmallFileAllocation(t *testing.T) {
	text := strings.Repeat("just some configuration text\n", 10)
	allocs := testing.AllocsPerRun(20, func() {
		if _, _, err := Scan(strings.NewReader(text), Options{Size: int64(len(text))}); err != nil {
			t.Fatal(err)
		}
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		Scan(strings.NewReader(text), Options{Size: int64(len(text))})
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 4<<10 || allocs > 10 {
		t.Fatalf("%d bytes in %.0f allocations per scan of a %d-byte file", per, allocs, len(text))
	}
}
