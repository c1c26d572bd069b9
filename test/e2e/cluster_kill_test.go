package e2e

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// kill -9 of the replica that holds a large blob's download lease, and
// the scan job, mid-download: the client retries against another replica
// and gets the verified blob once the dead replica's lease runs out; no
// partial object is ever visible in the bucket; another replica finishes
// the scan the dead one held.
func TestClusterSurvivesAKilledReplica(t *testing.T) {
	up := startUpstream(t)
	const size = 24 << 20
	manifest, blob := up.PushLargeBlobImage(t, "team/big", "1.0", size, 11)
	up.SetBlobDelay(blob, 400*time.Millisecond) // ~10 s for the whole blob
	c := newCluster(t, up)
	a := c.start(t)

	// Through a alone: it queues the scan and claims it (no one else is
	// there), and its scan and a client both wait on its slow download.
	if r := do(t, "GET", a.URL+"/v2/team/big/manifests/1.0", "Accept", manifestAccept); r.status != 200 {
		t.Fatalf("manifest: %d %s", r.status, r.body)
	}
	resp, err := http.Get(a.URL + "/v2/team/big/blobs/" + blob.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 2<<20); err != nil {
		t.Fatalf("first bytes from a: %v", err)
	}
	b, other := c.start(t), c.start(t)
	a.Kill()
	resp.Body.Close()

	// Nothing of the blob is in the bucket: a died before verifying it.
	for _, key := range c.s3.Objects(t, c.s3.Bucket) {
		if strings.Contains(key, blob.Hex) {
			t.Fatalf("a partial download is visible in the bucket: %s", key)
		}
	}
	// The client retries against another replica: it waits for a's lease
	// to run out, then downloads and verifies the blob.
	r, err := (&http.Client{Timeout: 2 * time.Minute}).Get(b.URL + "/v2/team/big/blobs/" + blob.String())
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	r.Body.Close()
	if err != nil || r.StatusCode != 200 || n != size || fmt.Sprintf("sha256:%x", h.Sum(nil)) != blob.String() {
		t.Fatalf("blob from b: %d, %d bytes, %v", r.StatusCode, n, err)
	}
	// The scan job a held is finished by b or the third replica.
	waitScanned(t, b, manifest.String())
	if logs := b.Logs.String() + other.Logs.String(); !strings.Contains(logs, `"msg":"scanned"`) {
		t.Fatal("no surviving replica scanned the image a was scanning")
	}
}
