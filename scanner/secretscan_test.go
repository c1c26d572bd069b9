package scanner

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// awsKeyID returns a distinct AKIA access key id for n.
func awsKeyID(n int) string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[2:], uint64(n)*2654435761+12345)
	copy(b[:2], "QZ")
	return "AKIA" + base32.StdEncoding.EncodeToString(b[:])
}

func rsaKeyPEM(t testing.TB) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // test key
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

// secretIDs lists the findings as "id path:line @layer".
func secretIDs(t *testing.T, inv *Inventory, layers ...v1.Layer) []string {
	t.Helper()
	names := map[string]string{"": "config"}
	for i, l := range layers {
		names[digestOf(t, l)] = fmt.Sprint(i)
	}
	var out []string
	for _, f := range inv.FileFindings {
		if f.Kind != vulndb.KindSecret || !strings.HasPrefix(f.Fingerprint, "sha256:") || f.Severity == "" {
			t.Errorf("finding %+v", f)
		}
		out = append(out, fmt.Sprintf("%s %s:%d @%s", f.ID, f.Path, f.Line, names[f.Layer]))
	}
	return out
}

func TestSecretsInLayers(t *testing.T) {
	key := rsaKeyPEM(t)
	l0 := gzLayer(t,
		file("app/.env", "A=1\nB=2\nAWS_ACCESS_KEY_ID="+awsKeyID(1)+"\n"),
		file("root/.ssh/id_rsa", key),
		file("app/big.txt", strings.Repeat("x", 2000)+awsKeyID(2)),
		exe("usr/bin/tool", []byte("\x7fELF\x00\x00"+awsKeyID(3)+"\n"+key)),
		file("app/example.env", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"),
	)
	// A later layer deletes the .env and the key: the first layer still
	// holds them, and everyone pulling the image pulls it.
	l1 := gzLayer(t, whiteout("app/.env"), whiteout("root"), file("app/other", "nothing"))
	inv := scan(t, image(t, l0, l1), WithSecretsMaxFile(1024))
	got := secretIDs(t, inv, l0, l1)
	want := []string{
		"secret/aws-access-key /app/.env:3 @0",
		"secret/private-key /root/.ssh/id_rsa:1 @0",
		"secret/private-key /usr/bin/tool:2 @0", // a binary: only its private key
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if inv.FileFindings[0].SHA256 != "" || inv.FileFindings[0].Query != -1 {
		t.Errorf("finding %+v", inv.FileFindings[0])
	}
	checkCachedScans(t, inv, []v1.Layer{l0, l1}, WithSecretsMaxFile(1024))
}

func TestSecretsInConfig(t *testing.T) {
	img := image(t, gzLayer(t, file("etc/hostname", "x")))
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Env = []string{"PATH=/usr/bin", "AWS_ACCESS_KEY_ID=" + awsKeyID(7)}
	cfg.History = []v1.History{{CreatedBy: "/bin/sh -c #(nop) ADD file"}, {CreatedBy: "RUN echo " + awsKeyID(8) + " && echo\n" + awsKeyID(9)}}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := secretIDs(t, scan(t, img))
	want := []string{
		"secret/aws-access-key config:Env:2 @config",
		"secret/aws-access-key config:history[1]:1 @config",
		"secret/aws-access-key config:history[1]:2 @config",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSecretBounds(t *testing.T) {
	// 12 files of 150 secrets each: 100 of each file count, and the image
	// stops at 1,000, with one note per truncated file and one for the
	// image.
	var entries []entry
	for f := range 12 {
		var sb strings.Builder
		for i := range 150 {
			sb.WriteString(awsKeyID(f*1000+i) + "\n")
		}
		entries = append(entries, file(fmt.Sprintf("app/f%02d", f), sb.String()))
	}
	l := gzLayer(t, entries...)
	inv := scan(t, image(t, l))
	if len(inv.FileFindings) != maxFileFindings {
		t.Fatalf("%d findings, want %d", len(inv.FileFindings), maxFileFindings)
	}
	perFile := map[string]int{}
	for _, f := range inv.FileFindings {
		perFile[f.Path]++
	}
	if perFile["/app/f00"] != 100 || perFile["/app/f09"] != 100 || perFile["/app/f10"] != 0 {
		t.Fatalf("per file: %v", perFile)
	}
	notes := strings.Join(inv.Notes, "\n")
	if strings.Count(notes, "only the first 100") != 10 || strings.Count(notes, "more than 1000 findings in files") != 1 {
		t.Fatalf("notes:\n%s", notes)
	}
	checkCachedScans(t, inv, []v1.Layer{l})
}

// recordingInspector is a FileInspector that records what it was shown.
type recordingInspector struct {
	mu   sync.Mutex
	seen []string
}

func (r *recordingInspector) CacheKey() string { return "recording" }
func (r *recordingInspector) MaxSize() int64   { return 10 }
func (r *recordingInspector) Wants(f InspectedFile) bool {
	return strings.HasSuffix(f.Path, ".bin")
}
func (r *recordingInspector) Inspect(_ context.Context, f InspectedFile, rd io.Reader) ([]vulndb.Finding, bool, error) {
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	r.seen = append(r.seen, fmt.Sprintf("%s %d %q @%d", f.Path, f.Size, b, f.LayerIndex))
	r.mu.Unlock()
	return []vulndb.Finding{{Kind: vulndb.KindMalware, ID: "Test-Sig", Path: f.Path}}, false, nil
}

// TestFileInspectorHook checks the generic hook: files are offered by path
// and size, read once with the rest of the walk still seeing them (the OS
// is detected from a file the inspector also read), and the findings get
// their layer.
func TestFileInspectorHook(t *testing.T) {
	rec := &recordingInspector{}
	l0 := gzLayer(t, file("a.bin", "abc"), file("big.bin", "0123456789A"), file("etc/os-release.bin", "x"), file("etc/os-release", debianOSRelease))
	l1 := gzLayer(t, whiteout("a.bin"))
	inv := scan(t, image(t, l0, l1), WithFileInspector(rec))
	want := []string{`/a.bin 3 "abc" @0`, `/etc/os-release.bin 1 "x" @0`}
	if strings.Join(rec.seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("seen:\n%s", strings.Join(rec.seen, "\n"))
	}
	if inv.OS.ID != "debian" {
		t.Fatalf("OS %+v", inv.OS)
	}
	if len(inv.FileFindings) != 2 || inv.FileFindings[0].Layer != digestOf(t, l0) || inv.FileFindings[0].ID != "Test-Sig" {
		t.Fatalf("findings %+v", inv.FileFindings)
	}
}

func TestSecretDetectionOff(t *testing.T) {
	img := image(t, gzLayer(t, file("app/.env", "K="+awsKeyID(1)+"\n")))
	if inv := scan(t, img); len(inv.FileFindings) != 1 {
		t.Fatalf("on: %+v", inv.FileFindings)
	}
	if inv := scan(t, img, WithSecretDetection(false)); len(inv.FileFindings) != 0 {
		t.Fatalf("off: %+v", inv.FileFindings)
	}
}

// TestSecretsInCycloneDX: a secret is listed where it is, from Portcullis
// rather than OSV, holding no secret.
func TestSecretsInCycloneDX(t *testing.T) {
	key := awsKeyID(5)
	inv := scan(t, image(t, gzLayer(t, file("app/.env", "K="+key+"\n"))))
	var buf strings.Builder
	if err := WriteCycloneDX(&buf, inv, inv.FileFindings); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, key[4:]) {
		t.Fatal("the SBOM holds the secret")
	}
	if !strings.Contains(out, `"description": "secret/aws-access-key in /app/.env line 1 (layer sha256:`) || strings.Contains(out, "osv.dev/vulnerability/secret") {
		t.Fatalf("SBOM:\n%s", out)
	}
}

// TestLargeFileStreamsToTheDetector: with a high secrets_max_file, a large
// file of one long line is streamed through the detector, not read into
// memory whole.
func TestLargeFileStreamsToTheDetector(t *testing.T) {
	const size = 32 << 20
	line := strings.Repeat("AIzaghp_xox-----BEGIN ", size/22) + awsKeyID(4)
	l := gzLayer(t, file("app/huge.txt", line))
	img := image(t, l)
	sc := New(WithSecretsMaxFile(1 << 30))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	inv, err := sc.Scan(context.Background(), img)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.FileFindings) != 1 || inv.FileFindings[0].Line != 1 {
		t.Fatalf("findings %+v", inv.FileFindings)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Fatalf("scanning a %d MiB file allocated %d MiB", size>>20, alloc>>20)
	}
}

// TestSecretPrefixField: a token's first four characters are in Prefix,
// and nowhere else in the finding.
func TestSecretPrefixField(t *testing.T) {
	key := awsKeyID(6)
	inv := scan(t, image(t, gzLayer(t, file("app/.env", "K="+key+"\n"))))
	if len(inv.FileFindings) != 1 {
		t.Fatalf("findings %+v", inv.FileFindings)
	}
	f := inv.FileFindings[0]
	if f.Prefix != "AKIA" || f.Summary != "aws access key" || f.Severity != "HIGH" {
		t.Fatalf("finding %+v", f)
	}
	if b, _ := json.Marshal(f); strings.Contains(string(b), key[4:]) {
		t.Fatalf("the finding holds the secret: %s", b)
	}
}
