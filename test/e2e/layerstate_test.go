package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/badfiles"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/harness"
)

// TestServerStoresLayerStates: a server scanning a base image and a new tag
// built on it stores the scanner's state after each stack of layers in its
// state file, and the new tag's inventory holds the base's packages and its
// own (scanned from the stored state of the base).
func TestServerStoresLayerStates(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	data := t.TempDir()
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	base, _ := pushAlpine(t, up)
	lodash, err := os.ReadFile("../../scanner/testdata/npm/lodash-4.17.20/package.json")
	if err != nil {
		t.Fatal(err)
	}
	app, err := mutate.AppendLayers(base, static.NewLayer(gzipTar(t, "app/node_modules/lodash/package.json", lodash), types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	appDigest := up.Push(t, "library/alpine", "app", app)
	pc := harness.StartPortcullis(t, bin, "--data", data, "--upstream", "docker.io="+up.URL(), "--default-upstream", "docker.io")

	for _, ref := range []string{"alpine:3.16.9", "alpine:app"} {
		waitLayerScan(t, pc, ref)
	}
	r := do(t, "GET", pc.URL+"/api/v1/scans/"+appDigest.String())
	var rec struct {
		Inventory scanner.Inventory `json:"inventory"`
	}
	if err := json.Unmarshal(r.body, &rec); err != nil {
		t.Fatalf("scan record: %v: %s", err, r.body)
	}
	found := map[string]int{}
	for _, p := range rec.Inventory.Packages {
		found[p.Name] = p.LayerIndex
	}
	if l, ok := found["lodash"]; !ok || l != 1 {
		t.Errorf("lodash in layer %d (found %v), want layer 1", l, ok)
	}
	if l, ok := found["busybox"]; !ok || l != 0 || rec.Inventory.OS.ID != "alpine" {
		t.Errorf("busybox in layer %d (found %v), OS %q; want layer 0 of alpine", l, ok, rec.Inventory.OS.ID)
	}

	if err := pc.Stop(); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(filepath.Join(data, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The key names the scanner's file inspectors as the server has them:
	// secrets (a scanner's default) and known-bad files, prepared against
	// the same database (no signatures, no clamd).
	badFiles := badfiles.NewInspector(vulndb.NewShared(filepath.Join(data, "vulndb")), config.DefaultHashMaxFile, nil, config.DefaultClamdMaxFile).ForWalk()
	if err := badFiles.(scanner.Preparer).Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, img := range map[string]v1.Image{"base": base, "new tag": app} {
		key := scanner.New(scanner.WithFileInspector(badFiles)).LayerStateKey(img)
		if _, ok, err := st.LayerState(context.Background(), key); err != nil || !ok {
			t.Errorf("%s: no layer state %s stored (err %v)", name, key, err)
		}
	}
}

// waitLayerScan asks the server to scan ref and waits until the scan is done.
func waitLayerScan(t *testing.T, pc *harness.Portcullis, ref string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := do(t, "POST", pc.URL+"/api/v1/scans?image="+ref)
		var rec struct {
			State string `json:"state"`
			Error string `json:"error"`
		}
		if r.status == http.StatusOK || r.status == http.StatusAccepted {
			if err := json.Unmarshal(r.body, &rec); err == nil && rec.State != "pending" && rec.State != "" {
				if rec.State != "done" {
					t.Fatalf("scan of %s: %s %s", ref, rec.State, rec.Error)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("scan of %s not done after 60 s: %d %s", ref, r.status, strings.TrimSpace(string(r.body)))
		}
	}
}

// gzipTar is a gzip layer holding one file.
func gzipTar(t *testing.T, name string, body []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
