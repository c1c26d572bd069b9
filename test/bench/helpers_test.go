package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// upstreamName is the registry name portcullis knows the test upstream by;
// it is also the default upstream, so paths need no registry prefix.
const upstreamName = "bench.test"

// mb is the unit of every MB and MB/s figure, as in Go's own MB/s.
const mb = 1e6

// copyBufSize is the client's read size: large, so that the client's
// syscalls are not what limits a loopback transfer.
const copyBufSize = 1 << 20

// quietTB keeps the harness from logging "started portcullis ..." for every
// process a benchmark starts (benchmark logs are always printed). Everything
// else, and everything once the benchmark failed, goes through.
type quietTB struct{ testing.TB }

func (q quietTB) Logf(format string, args ...any) {
	if !q.TB.Failed() && strings.HasPrefix(format, "started portcullis") {
		return
	}
	q.TB.Helper()
	q.TB.Logf(format, args...)
}

// startPortcullis runs the real binary in front of up. With dataDir empty
// the harness gives it a fresh temporary directory.
func startPortcullis(b *testing.B, up *testregistry.Registry, dataDir string) *harness.Portcullis {
	b.Helper()
	return startPortcullisAt(b, up.URL(), dataDir)
}

// startPortcullisAt is startPortcullis in front of the upstream at
// upstreamURL (a throttled front of the test registry, say).
func startPortcullisAt(b *testing.B, upstreamURL, dataDir string) *harness.Portcullis {
	b.Helper()
	args := []string{"--upstream", upstreamName + "=" + upstreamURL, "--default-upstream", upstreamName}
	if dataDir != "" {
		args = append(args, "--data", dataDir)
	}
	return harness.StartPortcullis(quietTB{b}, harness.BuildPortcullis(b), args...)
}

// freshPortcullis starts portcullis on a new, empty data directory, for
// iterations that need an uncached blob. stop ends the process and deletes
// its data, so large cold blobs do not pile up on disk.
func freshPortcullis(b *testing.B, up *testregistry.Registry) (pc *harness.Portcullis, stop func()) {
	b.Helper()
	return freshPortcullisAt(b, up.URL())
}

// freshPortcullisAt is freshPortcullis in front of the upstream at
// upstreamURL.
func freshPortcullisAt(b *testing.B, upstreamURL string) (pc *harness.Portcullis, stop func()) {
	b.Helper()
	dir, err := os.MkdirTemp(b.TempDir(), "data-")
	if err != nil {
		b.Fatal(err)
	}
	pc = startPortcullisAt(b, upstreamURL, dir)
	return pc, func() {
		if err := pc.Stop(); err != nil {
			b.Errorf("stop portcullis: %v", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			b.Errorf("remove %s: %v", dir, err)
		}
	}
}

// newClient is one keep-alive net/http client on loopback, used for both
// sides of every comparison.
func newClient(b *testing.B) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}
}

func blobURL(base, repo string, d v1.Hash) string {
	return base + "/v2/" + repo + "/blobs/" + d.String()
}

// cachedBlobPath is where the filesystem storage driver keeps a committed
// blob: <data>/cache/blobs/sha256/<2 hex>/<hex>/data.
func cachedBlobPath(dataDir string, d v1.Hash) string {
	return filepath.Join(dataDir, "cache", "blobs", d.Algorithm, d.Hex[:2], d.Hex, "data")
}

// waitCached waits until portcullis committed d into its cache. The commit
// (fsync and rename) runs after the client got its last byte; waiting keeps
// it out of the next measurement.
func waitCached(b *testing.B, dataDir string, d v1.Hash, size int64) {
	b.Helper()
	path := cachedBlobPath(dataDir, d)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Size() == size {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("blob %s not committed to %s within 2m (last: %v)", d, path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// discard is io.Discard without ReaderFrom, so io.CopyBuffer reads with our
// large buffer rather than io.Discard's 8 KiB one.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type fetchResult struct {
	n      int64
	digest string // sha256:<hex> of the body when hashed
	cache  string // Portcullis-Cache answer header
	dur    time.Duration
}

// fetch GETs url and reads the whole body with buf, hashing it when hash is
// set. A status other than 200, a transport error or a body whose length
// differs from Content-Length is an error.
func fetch(ctx context.Context, c *http.Client, url string, hdr http.Header, hash bool, buf []byte) (fetchResult, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fetchResult{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return fetchResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fetchResult{}, fmt.Errorf("GET %s: %s: %s", url, resp.Status, msg)
	}
	var w io.Writer = discard{}
	h := sha256.New()
	if hash {
		w = h
	}
	n, err := io.CopyBuffer(w, resp.Body, buf)
	r := fetchResult{n: n, cache: resp.Header.Get("Portcullis-Cache"), dur: time.Since(start)}
	if err != nil {
		return r, fmt.Errorf("GET %s: body after %d bytes: %w", url, n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return r, fmt.Errorf("GET %s: %d bytes, Content-Length %d", url, n, resp.ContentLength)
	}
	if hash {
		r.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	return r, nil
}

// mustFetchBlob fetches a blob, verifying its size and, when hash is set,
// its digest; any difference fails the benchmark.
func mustFetchBlob(b *testing.B, c *http.Client, url string, d v1.Hash, size int64, hash bool, buf []byte) fetchResult {
	b.Helper()
	r, err := fetch(b.Context(), c, url, nil, hash, buf)
	if err != nil {
		b.Fatal(err)
	}
	if r.n != size {
		b.Fatalf("GET %s: %d bytes, want %d", url, r.n, size)
	}
	if hash && r.digest != d.String() {
		b.Fatalf("GET %s: body hashes to %s, want %s", url, r.digest, d)
	}
	return r
}

// concurrentFetch runs clients GETs of url at once (released together) and
// returns the wall time from release to the last body and every result.
func concurrentFetch(ctx context.Context, c *http.Client, url string, clients int) (time.Duration, []fetchResult, []error) {
	results := make([]fetchResult, clients)
	errs := make([]error, clients)
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	for i := range clients {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			buf := make([]byte, 256<<10)
			ready.Done()
			<-release
			results[i], errs[i] = fetch(ctx, c, url, nil, true, buf)
		}()
	}
	ready.Wait()
	start := time.Now()
	close(release)
	done.Wait()
	return time.Since(start), results, errs
}

// procStatusBytes reads a "kB" field (VmHWM, VmRSS) of /proc/<pid>/status.
func procStatusBytes(pid int, field string) (int64, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseStatusField(string(raw), field)
}

func parseStatusField(status, field string) (int64, error) {
	for line := range strings.Lines(status) {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(v), " ")
		if unit != "kB" {
			return 0, fmt.Errorf("%s: unit %q, want kB", field, unit)
		}
		kb, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, errors.New(field + " not in /proc status")
}

func mustProcStatusBytes(b *testing.B, pid int, field string) int64 {
	b.Helper()
	v, err := procStatusBytes(pid, field)
	if err != nil {
		b.Fatalf("pid %d: %v", pid, err)
	}
	return v
}

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// procCPU is the user plus system CPU time a process used so far, all its
// threads included, with clockTick resolution.
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(raw))
}

func parseStatCPU(stat string) (time.Duration, error) {
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

func mustProcCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	d, err := procCPU(pid)
	if err != nil {
		b.Fatalf("pid %d: %v", pid, err)
	}
	return d
}

// selfCPU is the CPU time (user plus system) the benchmark process used so
// far: the client and, since the test registry runs in this process, the
// upstream too.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
