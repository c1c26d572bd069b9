package testregistry

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// pushTimeout bounds seeding; generous because a 1 GiB manifest push still
// HEADs its layer and CI machines are slow.
const pushTimeout = 5 * time.Minute

// Push writes img to repo:tag (or by digest alone when tag is "") and returns
// the manifest digest. It fails the test on error.
//
// Layers travel as ggcr clients send them, in a PATCH that ggcr's registry
// buffers in memory until the final PUT; seed layers of hundreds of MiB with
// PushLargeBlobImage instead.
func (r *Registry) Push(t testing.TB, repo, tag string, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("testregistry: digest of image for %s: %v", repo, err)
	}
	ref := r.ref(t, repo, tag, d)
	opts, done := r.remoteOptions(t)
	defer done()
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("testregistry: push %s: %v", ref, err)
	}
	return d
}

// PushIndex writes idx and every image and index it refers to, like Push.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("testregistry: digest of index for %s: %v", repo, err)
	}
	ref := r.ref(t, repo, tag, d)
	opts, done := r.remoteOptions(t)
	defer done()
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		t.Fatalf("testregistry: push index %s: %v", ref, err)
	}
	return d
}

func (r *Registry) ref(t testing.TB, repo, tag string, d v1.Hash) name.Reference {
	t.Helper()
	s := r.addr + "/" + repo + ":" + tag
	if tag == "" {
		s = r.addr + "/" + repo + "@" + d.String()
	}
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatalf("testregistry: reference %q: %v", s, err)
	}
	return ref
}

// remoteOptions gives each push its own transport, so seeding leaves no idle
// keep-alive connections behind that a test's client could be confused by.
func (r *Registry) remoteOptions(t testing.TB) ([]remote.Option, func()) {
	ctx, cancel := context.WithTimeout(t.Context(), pushTimeout)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	auth := authn.Anonymous
	if r.cfg.tokenAuth && r.cfg.username != "" {
		auth = &authn.Basic{Username: r.cfg.username, Password: r.cfg.password}
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuth(auth)}
	return opts, func() {
		cancel()
		tr.CloseIdleConnections()
	}
}

// PushLargeBlobImage seeds an OCI image whose single layer is exactly size
// bytes and returns the manifest and layer digests.
//
// The layer is a valid uncompressed tar (one file of pseudo-random bytes, then
// zero padding), so real clients can unpack it; the same size and seed always
// give the same digest. It is generated straight into the registry's blob
// directory while being hashed, so even 1 GiB never sits in memory and is
// written once; the config and manifest then go through a normal push, which
// finds the layer already present. size must be at least 1536 bytes (a tar
// header and end-of-archive marker).
func (r *Registry) PushLargeBlobImage(t testing.TB, repo, tag string, size int64, seed int64) (manifest v1.Hash, blob v1.Hash) {
	t.Helper()
	layer, err := r.blobs.writeLargeTar(size, seed)
	if err != nil {
		t.Fatalf("testregistry: large blob: %v", err)
	}
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		t.Fatalf("testregistry: large blob config: %v", err)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatalf("testregistry: large blob image: %v", err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	return r.Push(t, repo, tag, img), layer.digest
}

// tarOverhead is a ustar header plus the two zero blocks that end an archive.
const tarOverhead = 512 + 1024

// writeLargeTar generates the large layer into the blob directory and returns
// it as a layer backed by that file.
func (b *blobStore) writeLargeTar(size, seed int64) (*fileLayer, error) {
	if size < tarOverhead {
		return nil, fmt.Errorf("size %d is below the %d-byte minimum of a tar", size, tarOverhead)
	}
	tmp, err := os.CreateTemp(b.dir, "large-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed into place
	defer tmp.Close()

	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], uint64(seed))
	rng := rand.NewChaCha8(key)

	hasher := sha256.New()
	counter := &countingWriter{w: io.MultiWriter(tmp, hasher)}
	buf := bufio.NewWriterSize(counter, mib)
	// A payload that is a whole number of blocks needs no padding, so the
	// archive is header + payload + trailer; the remainder (< 512 bytes) goes
	// after the trailer as zeros, which tar readers skip.
	payload := (size - tarOverhead) / 512 * 512
	tw := tar.NewWriter(buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     "large.bin",
		Mode:     0o644,
		Size:     payload,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("tar header: %w", err)
	}
	if _, err := io.CopyN(tw, rng, payload); err != nil {
		return nil, fmt.Errorf("generate payload: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	if _, err := buf.Write(make([]byte, size-tarOverhead-payload)); err != nil {
		return nil, err
	}
	if err := buf.Flush(); err != nil {
		return nil, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if counter.n != size {
		return nil, fmt.Errorf("generated %d bytes, want %d", counter.n, size)
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(hasher.Sum(nil))}
	if err := os.MkdirAll(filepath.Dir(b.path(d)), 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), b.path(d)); err != nil {
		return nil, err
	}
	return &fileLayer{path: b.path(d), digest: d, size: size}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// fileLayer is an uncompressed tar layer already in the blob store; knowing
// its digest and size up front keeps ggcr from reading it to compute them.
type fileLayer struct {
	path   string
	digest v1.Hash
	size   int64
}

func (l *fileLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID equals the digest: the layer is stored uncompressed.
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
