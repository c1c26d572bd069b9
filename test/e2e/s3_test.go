package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/s3server"
	"github.com/portcullis/portcullis/test/testregistry"
)

// Two portcullis processes with their own --data share one S3 bucket (a
// real S3 server on loopback): crane pulls an image through the first, its
// blobs land in the bucket, and the second serves the same image from the
// bucket without fetching a blob upstream again.
func TestS3StorageSharedByTwoReplicas(t *testing.T) {
	up := testregistry.Start(t)
	srv := s3server.Start(t)
	img := ociImage(t, 2<<20)
	up.Push(t, "team/app", "1.0", img)
	blobs := layers(t, img)
	cfgDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	blobs = append(blobs, cfgDigest)

	var params []string
	for k, v := range srv.Parameters() {
		params = append(params, fmt.Sprintf("%s: %v", k, v))
	}
	config := filepath.Join(t.TempDir(), "portcullis.yaml")
	yaml := fmt.Sprintf(`
default_upstream: up.test
upstreams:
  - {name: up.test, url: %s}
storage:
  driver: s3
  parameters: {%s}
`, up.URL(), strings.Join(params, ", "))
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := harness.BuildPortcullis(t)
	first := harness.StartPortcullis(t, bin, "--config", config)

	pull := func(pc *harness.Portcullis) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		tar := filepath.Join(t.TempDir(), "img.tar")
		ref := strings.TrimPrefix(pc.URL, "http://") + "/team/app:1.0"
		if out, err := clients.CraneRun(ctx, t, "pull", "--insecure", ref, tar); err != nil {
			t.Fatalf("crane pull %s: %v\n%s", ref, err, out)
		}
		// crane checked every digest; the layers it wrote are the image's.
		got, err := tarball.ImageFromPath(tar, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := img.ConfigName()
		if d, err := got.ConfigName(); err != nil || d != want {
			t.Fatalf("pulled image with config %s (%v), want %s", d, err, want)
		}
		if l := layers(t, got); fmt.Sprint(l) != fmt.Sprint(layers(t, img)) {
			t.Fatalf("pulled layers %v, want %v", l, layers(t, img))
		}
	}
	pull(first)

	// Every blob is in the bucket, under its digest, whole; the local
	// --data holds no cached blob.
	// The commit to the bucket follows the last byte sent to the client,
	// and ends with the upload's removal after its copy to the blob's key:
	// the bucket is looked at once both are done (or the deadline passed).
	objects := map[string]bool{}
	key := func(d v1.Hash) string { return fmt.Sprintf("blobs/%s/%s/%s/data", d.Algorithm, d.Hex[:2], d.Hex) }
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		clear(objects)
		uploads := 0
		for _, k := range srv.Objects(t, srv.Bucket) {
			objects[k] = true
			if strings.HasPrefix(k, "_uploads/") {
				uploads++
			}
		}
		missing := 0
		for _, d := range blobs {
			if !objects[key(d)] {
				missing++
			}
		}
		if missing == 0 && uploads == 0 {
			break
		}
		if time.Now().After(deadline) {
			if missing > 0 {
				t.Fatalf("%d blobs of the image not in the bucket; it holds %v", missing, objects)
			}
			break // the uploads left are reported below
		}
	}
	for _, d := range blobs {
		key := key(d)
		fi, err := os.Stat(filepath.Join(srv.Root, srv.Bucket, filepath.FromSlash(key)))
		if err != nil {
			t.Fatal(err)
		}
		if want := blobSize(t, img, d); fi.Size() != want {
			t.Fatalf("blob %s in the bucket holds %d bytes, want %d", d, fi.Size(), want)
		}
	}
	for k := range objects {
		if strings.HasPrefix(k, "_uploads/") {
			t.Errorf("upload left in the bucket: %s", k)
		}
	}
	if local := cachedBlobs(t, first.DataDir); len(local) != 0 {
		t.Errorf("blobs cached under --data with s3 storage: %v", local)
	}
	before := map[string]int{}
	for _, d := range blobs {
		before[d.String()] = up.Count("GET", "/blobs/"+d.String())
		if before[d.String()] != 1 {
			t.Errorf("upstream saw %d GETs of blob %s through the first replica, want 1", before[d.String()], d)
		}
	}

	// A second replica on the same bucket with its own --data.
	second := harness.StartPortcullis(t, bin, "--config", config)
	pull(second)
	for _, d := range blobs {
		if n := up.Count("GET", "/blobs/"+d.String()); n != before[d.String()] {
			t.Errorf("the second replica fetched blob %s upstream (%d GETs, %d before): it should read the bucket", d, n, before[d.String()])
		}
	}
}

// blobSize is the size of img's layer or config d.
func blobSize(t *testing.T, img v1.Image, d v1.Hash) int64 {
	t.Helper()
	if cfg, _ := img.ConfigName(); cfg == d {
		raw, err := img.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		return int64(len(raw))
	}
	l, err := img.LayerByDigest(d)
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
