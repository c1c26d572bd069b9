package testregistry

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestMultiArchIndex(t *testing.T) {
	r := Start(t)
	for _, it := range []types.MediaType{types.DockerManifestList, types.OCIImageIndex} {
		idx := MultiArchIndex(t, it, "linux/amd64", "linux/arm64/v8")
		d := r.PushIndex(t, "multi/arch", "latest", idx)

		got, err := remote.Index(mustRef(t, r, "multi/arch@"+d.String()), clientOpts(t, authn.Anonymous)...)
		if err != nil {
			t.Fatalf("%s: pull: %v", it, err)
		}
		if err := validate.Index(got); err != nil {
			t.Fatalf("%s: invalid index: %v", it, err)
		}
		im, err := got.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if im.MediaType != it || len(im.Manifests) != 2 {
			t.Fatalf("%s: index %s with %d manifests", it, im.MediaType, len(im.Manifests))
		}
		for i, want := range []string{"linux/amd64", "linux/arm64/v8"} {
			desc := im.Manifests[i]
			if desc.Platform == nil || desc.Platform.String() != want {
				t.Errorf("%s: child %d platform %v, want %s", it, i, desc.Platform, want)
				continue
			}
			child, err := got.Image(desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := child.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if p := cf.Platform(); p == nil || p.String() != want {
				t.Errorf("%s: child %d config platform %v, want %s", it, i, p, want)
			}
			if desc.MediaType.IsIndex() || (it == types.OCIImageIndex) != (desc.MediaType == types.OCIManifestSchema1) {
				t.Errorf("%s: child media type %s", it, desc.MediaType)
			}
		}
	}
}

func TestLargeBlobStreams(t *testing.T) {
	size := int64(300 << 20)
	if s := os.Getenv("TESTREGISTRY_LARGE_MIB"); s != "" {
		mibs, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		size = int64(mibs) << 20
	}
	r := Start(t)
	start := time.Now()
	md, bd := r.PushLargeBlobImage(t, "big/blob", "v1", size, 42)
	t.Logf("seeded %d MiB in %v", size>>20, time.Since(start))
	r.ResetCounts()

	img, err := remote.Image(mustRef(t, r, "big/blob:v1"), clientOpts(t, authn.Anonymous)...)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d != md {
		t.Errorf("manifest %s, want %s", d, md)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v (%d)", err, len(layers))
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCIUncompressedLayer {
		t.Errorf("layer media type %s", mt)
	}
	start = time.Now()
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil || n != size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != bd.String() {
		t.Fatalf("streamed %d bytes (err %v) hashing to %x, want %d bytes of %s", n, err, h.Sum(nil), size, bd)
	}
	t.Logf("pulled and hashed %d MiB in %v", size>>20, time.Since(start))
	if got := r.Count(http.MethodGet, "/blobs/"+bd.String()); got != 1 {
		t.Errorf("%d blob GETs, want 1", got)
	}

	// Ranges are served by seeking; the head of the blob is a tar header.
	blobURL := r.URL() + "/v2/big/blob/blobs/" + bd.String()
	resp, body := httpDo(t, http.MethodGet, blobURL, http.Header{"Range": {"bytes=0-511"}})
	if resp.StatusCode != http.StatusPartialContent || len(body) != 512 {
		t.Fatalf("range GET: %d with %d bytes", resp.StatusCode, len(body))
	}
	if hdr, err := tar.NewReader(bytes.NewReader(body)).Next(); err != nil || hdr.Name != "large.bin" {
		t.Errorf("blob does not start with a tar header: %v", err)
	}
	mid := size / 2
	resp, body = httpDo(t, http.MethodGet, blobURL, http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", mid, mid+4095)}})
	if resp.StatusCode != http.StatusPartialContent || len(body) != 4096 {
		t.Errorf("mid range GET: %d with %d bytes", resp.StatusCode, len(body))
	}

	// Sys is what the Go runtime ever got from the OS, so it would show a
	// buffered blob; unlike RSS it leaves out the race detector's shadow memory.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("Go runtime memory from the OS: %d MiB; process peak RSS: %d MiB", ms.Sys>>20, peakRSS(t)>>20)
	if ms.Sys > 64<<20 {
		t.Errorf("Go runtime holds %d MiB: the large blob went through memory", ms.Sys>>20)
	}
}

func peakRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	return 0
}

func TestLargeBlobIsDeterministicTar(t *testing.T) {
	r := Start(t)
	const size = 1<<20 + 777 // not a multiple of the tar block size
	_, a := r.PushLargeBlobImage(t, "det/a", "v1", size, 7)
	_, b := r.PushLargeBlobImage(t, "det/b", "", size, 7)
	_, c := r.PushLargeBlobImage(t, "det/c", "v1", size, 8)
	if a != b || a == c {
		t.Fatalf("seed 7 gave %s and %s, seed 8 gave %s", a, b, c)
	}

	l, err := remote.Layer(mustRef(t, r, "det/a@"+a.String()).(name.Digest), clientOpts(t, authn.Anonymous)...)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, tr); err != nil || n != hdr.Size {
		t.Fatalf("tar payload: %d bytes, %v", n, err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the payload: %v, want end of archive", err)
	}
}

func TestReferrers(t *testing.T) {
	const artifactType = "application/vnd.example.sbom.v1+json"
	payload := []byte(`{"packages":[]}`)
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprintf("enabled=%v", enabled), func(t *testing.T) {
			r := Start(t, WithReferrers(enabled))
			subject := RandomImage(t, 1, 1024, types.OCIManifestSchema1)
			sd := r.Push(t, "ref/app", "v1", subject)
			desc, err := partial.Descriptor(subject)
			if err != nil {
				t.Fatal(err)
			}
			ad := r.Push(t, "ref/app", "", Artifact(t, *desc, artifactType, payload))

			resp, _ := httpDo(t, http.MethodGet, r.URL()+"/v2/ref/app/referrers/"+sd.String(), nil)
			if want := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[enabled]; resp.StatusCode != want {
				t.Errorf("referrers endpoint: %d, want %d", resp.StatusCode, want)
			}

			// ggcr finds the artifact either way: the API, or the fallback tag
			// it maintained while pushing.
			opts := clientOpts(t, authn.Anonymous)
			idx, err := remote.Referrers(mustRef(t, r, "ref/app@"+sd.String()).(name.Digest), opts...)
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 || im.Manifests[0].Digest != ad || im.Manifests[0].ArtifactType != artifactType {
				t.Fatalf("referrers: %+v, want %s of type %s", im.Manifests, ad, artifactType)
			}
			if tagged := r.Count(http.MethodGet, "/manifests/sha256-"+sd.Hex); (tagged > 0) == enabled {
				t.Errorf("fallback tag read %d times with referrers enabled=%v", tagged, enabled)
			}

			art, err := remote.Image(mustRef(t, r, "ref/app@"+ad.String()), opts...)
			if err != nil {
				t.Fatal(err)
			}
			m, err := art.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject == nil || m.Subject.Digest != sd || string(m.Config.MediaType) != artifactType || len(m.Layers) != 1 {
				t.Fatalf("artifact manifest: %+v", m)
			}
			l, err := art.LayerByDigest(m.Layers[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, payload) {
				t.Errorf("artifact payload %q (%v), want %q", got, err, payload)
			}
		})
	}
}

func TestForeignLayerIsNotUploaded(t *testing.T) {
	r := Start(t)
	img := ForeignLayerImage(t)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.DockerManifestSchema2 || len(m.Layers) != 2 {
		t.Fatalf("manifest %s with %d layers", m.MediaType, len(m.Layers))
	}
	foreign, normal := m.Layers[0], m.Layers[1]
	if foreign.MediaType != types.DockerForeignLayer || len(foreign.URLs) != 1 || foreign.URLs[0] != foreignURL {
		t.Fatalf("foreign layer descriptor %+v", foreign)
	}
	if normal.MediaType != types.DockerLayer {
		t.Fatalf("normal layer descriptor %+v", normal)
	}

	d := r.Push(t, "foreign/app", "v1", img)
	if n := r.Count("", "/blobs/"+foreign.Digest.String()); n != 0 {
		t.Errorf("%d requests for the foreign blob during push", n)
	}
	base := r.URL() + "/v2/foreign/app/blobs/"
	if resp, _ := httpDo(t, http.MethodHead, base+foreign.Digest.String(), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("foreign blob HEAD: %d, want 404", resp.StatusCode)
	}
	if resp, _ := httpDo(t, http.MethodHead, base+normal.Digest.String(), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("normal blob HEAD: %d, want 200", resp.StatusCode)
	}
	desc, err := remote.Get(mustRef(t, r, "foreign/app:v1"), clientOpts(t, authn.Anonymous)...)
	if err != nil || desc.Digest != d {
		t.Fatalf("manifest: %v", err)
	}
	if !bytes.Contains(desc.Manifest, []byte(foreignURL)) {
		t.Errorf("stored manifest lost the foreign URL: %s", desc.Manifest)
	}
}
