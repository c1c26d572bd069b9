package scanner

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// memoryLayerCache is a LayerCache in a map, as the store keeps it; it
// refuses states over the bound, as the store does.
type memoryLayerCache struct {
	mu     sync.Mutex
	states map[string][]byte
	gets   int
	failOn string // every call fails with this error when set
}

func newMemoryLayerCache() *memoryLayerCache {
	return &memoryLayerCache{states: map[string][]byte{}}
}

func (c *memoryLayerCache) LayerState(_ context.Context, key string) ([]byte, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	if c.failOn != "" {
		return nil, false, errors.New(c.failOn)
	}
	b, ok := c.states[key]
	return b, ok, nil
}

func (c *memoryLayerCache) PutLayerState(_ context.Context, key string, state []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failOn != "" {
		return errors.New(c.failOn)
	}
	if len(state) > MaxLayerStateSize {
		return errors.New("state too large")
	}
	c.states[key] = state
	return nil
}

// countedLayer counts the reads of a layer's blob.
type countedLayer struct {
	v1.Layer
	reads *atomic.Int32
}

func (l countedLayer) Compressed() (io.ReadCloser, error) {
	l.reads.Add(1)
	return l.Layer.Compressed()
}

// countedImage stacks layers, each counting its reads into reads.
func countedImage(t testing.TB, reads *atomic.Int32, layers ...v1.Layer) v1.Image {
	t.Helper()
	counted := make([]v1.Layer, len(layers))
	for i, l := range layers {
		counted[i] = countedLayer{Layer: l, reads: reads}
	}
	img, err := mutate.AppendLayers(empty.Image, counted...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// inventoryJSON is the inventory as the store keeps it: what must be the
// same whether the scan read every layer or started from a stored state.
func inventoryJSON(t testing.TB, inv *Inventory) string {
	t.Helper()
	b, err := json.MarshalIndent(inv, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkCachedScans scans the image made of layers with a layer cache in
// every way one can meet it and compares each inventory with the full
// scan's, want: a cold cache; the same image again (no layer read); and,
// for every stack of lowest layers, that stack scanned first and then the
// whole image (only the layers above it read).
func checkCachedScans(t *testing.T, want *Inventory, layers []v1.Layer, opts ...Option) {
	t.Helper()
	wantJSON := inventoryJSON(t, want)
	check := func(what string, cache *memoryLayerCache, wantReads int32) {
		t.Helper()
		var reads atomic.Int32
		got, err := New(append(opts, WithLayerCache(cache))...).Scan(context.Background(), countedImage(t, &reads, layers...))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if diff := cmp.Diff(wantJSON, inventoryJSON(t, got)); diff != "" {
			t.Errorf("%s: inventory differs from a full scan (-full +cached):\n%s", what, diff)
		}
		if n := reads.Load(); n != wantReads {
			t.Errorf("%s: %d layers read, want %d", what, n, wantReads)
		}
	}
	cache := newMemoryLayerCache()
	check("cold cache", cache, int32(len(layers)))
	check("every layer known", cache, 0)
	for k := 1; k < len(layers); k++ {
		cache := newMemoryLayerCache()
		var reads atomic.Int32
		if _, err := New(append(opts, WithLayerCache(cache))...).Scan(context.Background(), countedImage(t, &reads, layers[:k]...)); err != nil {
			t.Fatalf("scan of the lowest %d layers: %v", k, err)
		}
		check("lowest "+strconv.Itoa(k)+" layers known", cache, int32(len(layers)-k))
	}
}

func TestLayerCacheRealImage(t *testing.T) {
	t.Parallel()
	img, err := ImageFromArchive(alpineArchive)
	if err != nil {
		t.Fatal(err)
	}
	want := scan(t, img)
	if len(want.Packages) < 10 {
		t.Fatalf("only %d packages in the Alpine image", len(want.Packages))
	}
	base, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	// The real image alone, then a new tag of it: a layer that rewrites the
	// apk database without two packages and adds an npm package, and one
	// that deletes /etc/os-release... and puts it back as a symlink.
	installed := fixtureFromImage(t, img, "lib/apk/db/installed")
	var kept []string
	for _, para := range strings.Split(installed, "\n\n") {
		if !strings.Contains(para, "\nP:busybox\n") && !strings.Contains(para, "\nP:zlib\n") {
			kept = append(kept, para)
		}
	}
	layers := append(base,
		gzLayer(t, file("lib/apk/db/installed", strings.Join(kept, "\n\n")),
			file("app/node_modules/lodash/package.json", fixture(t, "npm/lodash-4.17.20/package.json"))),
		gzLayer(t, whiteout("etc/os-release"), file("opt/release/os-release", "ID=alpine\nVERSION_ID=3.16.9\nPRETTY_NAME=\"through a symlink\"\n"), symlink("etc/os-release", "../opt/release/os-release")),
	)
	for _, n := range []int{1, len(layers)} {
		want := scan(t, image(t, layers[:n]...))
		checkCachedScans(t, want, layers[:n])
	}
}

// fixtureFromImage reads one file from the top layer of a real image.
func fixtureFromImage(t *testing.T, img v1.Image, name string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[len(layers)-1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for range 100_000 {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the image: %v", name, err)
		}
		if p, _ := cleanPath(hdr.Name); p == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("%s not found in the first 100,000 entries", name)
	return ""
}

// TestLayerCacheKeys: a state is reused only for the same stack of layers
// scanned with the same options.
func TestLayerCacheKeys(t *testing.T) {
	t.Parallel()
	status := fixture(t, "dpkg/status")
	lodash := fixture(t, "npm/lodash-4.17.20/package.json")
	withStatus := gzLayer(t, file("var/lib/dpkg/status", status))
	withoutStatus := gzLayer(t, file("etc/hostname", "box\n"))
	deletes := gzLayer(t, whiteout("var/lib/dpkg/status"), file("app/node_modules/lodash/package.json", lodash))

	cache := newMemoryLayerCache()
	sc := New(WithLayerCache(cache))
	ctx := context.Background()
	// The same top layer on two different bases: its state after it
	// differs, so the second image must not reuse the first one's.
	a, err := sc.Scan(ctx, image(t, withoutStatus, deletes))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sc.Scan(ctx, image(t, withStatus, deletes))
	if err != nil {
		t.Fatal(err)
	}
	c, err := sc.Scan(ctx, image(t, withStatus))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(a.Packages); len(got) != 1 || got[0] != "lodash@4.17.20 (1)" {
		t.Errorf("image a: %v", got)
	}
	if got := names(b.Packages); len(got) != 1 || got[0] != "lodash@4.17.20 (1)" {
		t.Errorf("image b: %v", got)
	}
	if len(c.Packages) != 6 {
		t.Errorf("image c: %v", names(c.Packages))
	}

	// A smaller file size bound skips the status: a state stored with the
	// default bound must not be reused.
	small := New(WithLayerCache(cache), WithMaxFileSize(16))
	inv, err := small.Scan(ctx, image(t, withStatus))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Packages) != 0 {
		t.Errorf("with a 16-byte file bound: %v, want none (a state stored with other options was reused)", names(inv.Packages))
	}
	if k1, k2 := sc.layerStateKeys(inv.Layers), small.layerStateKeys(inv.Layers); k1[0] == k2[0] {
		t.Errorf("same key %s for different options", k1[0])
	}
}

// TestLayerCacheBadStates: whatever the shared store hands back, the scan
// gives the full scan's inventory; a state that cannot be right is not
// used.
func TestLayerCacheBadStates(t *testing.T) {
	t.Parallel()
	status := fixture(t, "dpkg/status")
	layers := []v1.Layer{
		gzLayer(t, file("var/lib/dpkg/status", status), file("etc/os-release", "ID=debian\nVERSION_ID=12\n")),
		gzLayer(t, file("app/node_modules/lodash/package.json", fixture(t, "npm/lodash-4.17.20/package.json"))),
	}
	want := inventoryJSON(t, scan(t, image(t, layers...)))
	good := newMemoryLayerCache()
	sc := New(WithLayerCache(good))
	if _, err := sc.Scan(context.Background(), image(t, layers...)); err != nil {
		t.Fatal(err)
	}
	keys := sc.layerStateKeys(scan(t, image(t, layers...)).Layers)
	stored := good.states[keys[0]]
	edit := func(f func(ls *layerState)) []byte {
		var ls layerState
		if err := json.Unmarshal(stored, &ls); err != nil {
			t.Fatal(err)
		}
		f(&ls)
		b, err := json.Marshal(ls)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name  string
		state []byte
	}{
		{"not JSON", []byte("\x00garbage")},
		{"truncated", stored[:len(stored)/2]},
		{"unknown field", append([]byte(`{"extra":1,`), stored[1:]...)},
		{"stored under another key", edit(func(ls *layerState) { ls.Key = keys[1] })},
		{"for another number of layers", edit(func(ls *layerState) { ls.Layers = 2 })},
		{"entry of a layer above", edit(func(ls *layerState) { ls.Entries[0].Layer = 1 })},
		{"package of a layer above its file", edit(func(ls *layerState) {
			for i := range ls.Entries {
				for j := range ls.Entries[i].Packages {
					ls.Entries[i].Packages[j].Layer = 1
				}
			}
		})},
		{"path climbing out", edit(func(ls *layerState) { ls.Entries[0].Path = "../etc/x" })},
		{"empty path", edit(func(ls *layerState) { ls.Entries[0].Path = "" })},
		{"duplicate path", edit(func(ls *layerState) { ls.Entries = append(ls.Entries, ls.Entries[0]) })},
		{"OS candidate not remembered", edit(func(ls *layerState) { ls.OSCandidates = []string{"nowhere"} })},
		{"budget overdrawn", edit(func(ls *layerState) { ls.TarEntries = defaultMaxImageEntries + 1 })},
		{"negative budget", edit(func(ls *layerState) { ls.ReadBytes = -1 })},
		{"too large", append(stored, make([]byte, MaxLayerStateSize)...)},
		{"finding in a file of a layer above", edit(func(ls *layerState) {
			ls.FileFindings = []stateFileFinding{{Finding: vulndb.Finding{Kind: vulndb.KindSecret, ID: "secret/x"}, Layer: 1}}
		})},
		{"finding in a file without a kind", edit(func(ls *layerState) {
			ls.FileFindings = []stateFileFinding{{Finding: vulndb.Finding{ID: "CVE-1"}}}
		})},
		{"findings in files past the bound", edit(func(ls *layerState) {
			ls.FileFindings = make([]stateFileFinding, maxFileFindings+1)
			for i := range ls.FileFindings {
				ls.FileFindings[i].Finding = vulndb.Finding{Kind: vulndb.KindSecret, ID: "secret/x"}
			}
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cache := newMemoryLayerCache()
			cache.states[keys[0]] = tc.state
			var reads atomic.Int32
			got, err := New(WithLayerCache(cache)).Scan(context.Background(), countedImage(t, &reads, layers...))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, inventoryJSON(t, got)); diff != "" {
				t.Errorf("inventory differs from a full scan:\n%s", diff)
			}
			if n := reads.Load(); n != 2 {
				t.Errorf("%d layers read, want 2 (the bad state was used)", n)
			}
		})
	}

	t.Run("failing cache", func(t *testing.T) {
		t.Parallel()
		cache := newMemoryLayerCache()
		cache.failOn = "connection refused"
		got, err := New(WithLayerCache(cache)).Scan(context.Background(), image(t, layers...))
		if err != nil {
			t.Fatalf("a failing cache failed the scan: %v", err)
		}
		if diff := cmp.Diff(want, inventoryJSON(t, got)); diff != "" {
			t.Errorf("inventory differs from a full scan:\n%s", diff)
		}
		if cache.gets != 1 {
			t.Errorf("%d reads of a failing cache, want 1", cache.gets)
		}
	})
}

// TestLayerCacheStateTooLarge: a stack whose state is past the bound is not
// stored, and is read again next time.
func TestLayerCacheStateTooLarge(t *testing.T) {
	t.Parallel()
	// 40,000 npm packages with long names: about 10 MB of state.
	var entries []entry
	for i := range 40_000 {
		name := "pkg-" + strings.Repeat("x", 150) + "-" + strconv.Itoa(i)
		entries = append(entries, file("app/node_modules/"+name+"/package.json", `{"name":"`+name+`","version":"1.0.0"}`))
	}
	layers := []v1.Layer{gzLayer(t, entries...)}
	cache := newMemoryLayerCache()
	inv, err := New(WithLayerCache(cache)).Scan(context.Background(), image(t, layers...))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Packages) != 40_000 {
		t.Fatalf("%d packages", len(inv.Packages))
	}
	if len(cache.states) != 0 {
		t.Errorf("%d states stored, want none past %d bytes", len(cache.states), MaxLayerStateSize)
	}
}

func FuzzLayerState(f *testing.F) {
	sc := New()
	st := newFSState()
	st.put("var/lib/dpkg/status", &pathEntry{layer: 0, pkgs: []found{{pkg: Package{Name: "bash", Version: "5"}, os: &osInfo{arch: "amd64"}}}}, nil)
	st.put("etc/os-release", &pathEntry{layer: 1, content: []byte("ID=debian\n")}, nil)
	seed, err := sc.encodeLayerState("k", 2, st, &scanBudget{entries: sc.maxImageEntries - 10, readBytes: sc.maxReadBytes - 100})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"key":"k","layers":2,"entries":[{"path":"a","layer":5}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, budget, err := sc.decodeLayerState("k", 2, data)
		if err != nil {
			if !errors.Is(err, errBadLayerState) {
				t.Fatalf("error does not wrap errBadLayerState: %v", err)
			}
			return
		}
		// What was accepted encodes again and gives the same inventory.
		for p, e := range st.entries {
			if e.layer < 0 || e.layer >= 2 {
				t.Fatalf("entry %q of layer %d accepted", p, e.layer)
			}
		}
		if budget.entries < 0 || budget.readBytes < 0 {
			t.Fatalf("budget %+v", budget)
		}
		_ = st.packages(detectOS(st), []Layer{{}, {}})
	})
}
