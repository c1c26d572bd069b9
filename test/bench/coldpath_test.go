package bench

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/testregistry"
	"golang.org/x/sys/unix"
)

// floorCPU is the CPU one thread spends on the least work a verifying
// pull-through cache does per byte: hash it with sha256, write it once to a
// file, and send the file once to a loopback TCP connection with sendfile
// (a goroutine in this process reads and discards it, on another thread
// whose CPU is not counted). The buffer is written again and again, as a
// download's chunks are. Measured with getrusage(RUSAGE_THREAD) on a
// locked thread. With reserve, the file's blocks are allocated 64 MiB
// ahead of the writes, as portcullis's spool does (proxy/cache/ingest.go):
// the floor of the same work done the same way.
func floorCPU(b *testing.B, size int64, reserve bool) time.Duration {
	b.Helper()
	chunk := make([]byte, 256<<10)
	rand.Read(chunk)
	f, err := os.Create(filepath.Join(b.TempDir(), "floor"))
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	drained := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			drained <- err
			return
		}
		defer c.Close()
		_, err = io.CopyBuffer(discard{}, c, make([]byte, copyBufSize))
		drained <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	h := sha256.New()
	var reserved int64
	for n := int64(0); n < size; n += int64(len(chunk)) {
		p := chunk[:min(int64(len(chunk)), size-n)]
		if need := n + int64(len(p)); reserve && need > reserved {
			end := min(size, need+64<<20)
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, reserved, end-reserved); err != nil {
				b.Fatalf("fallocate: %v", err)
			}
			reserved = end
		}
		h.Write(p)
		if _, err := f.Write(p); err != nil {
			b.Fatal(err)
		}
	}
	_ = h.Sum(nil)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	sent, err := conn.(*net.TCPConn).ReadFrom(f)
	cpu := threadCPU() - cpu0
	conn.Close()
	if err != nil || sent != size {
		b.Fatalf("sendfile: %d of %d bytes, %v", sent, size, err)
	}
	if err := <-drained; err != nil {
		b.Fatal(err)
	}
	return cpu
}

// pageSource says which page-cache pages a cold pull (and its floor) writes
// into. On this machine, a virtual machine whose balloon driver reports free
// memory to the host, writing into pages that have been free for more than a
// couple of seconds costs several times more CPU than writing into pages
// freed a moment ago (host faults, charged as the writer's system time):
// 1.3-1.9 s/GiB against 0.1-0.3 for the same 256 KiB writes of 256 MiB,
// measured alternately. Left alone, whichever of the floor and the pull ran
// closer to the last file removal won by up to half a second per GiB.
type pageSource int

const (
	// pagesRecycled: pages the kernel freed just before, as on a busy
	// server whose page cache turns over (and on any host that does not
	// take free memory back).
	pagesRecycled pageSource = iota
	// pagesReturned: pages left free long enough for the host to take them
	// back.
	pagesReturned
)

// preparePages leaves size bytes of page-cache pages in the state ps says,
// just before a measured write of that many bytes.
func preparePages(b *testing.B, ps pageSource, size int64) {
	b.Helper()
	switch ps {
	case pagesReturned:
		// Linux reports free pages to the balloon device 2 s after they
		// were freed (page_reporting_delay).
		time.Sleep(3 * time.Second)
	default:
		f, err := os.CreateTemp(b.TempDir(), "recycle-")
		if err != nil {
			b.Fatal(err)
		}
		chunk := make([]byte, 1<<20)
		for n := int64(0); n < size && err == nil; n += int64(len(chunk)) {
			_, err = f.Write(chunk[:min(int64(len(chunk)), size-n)])
		}
		f.Close()
		if rerr := os.Remove(f.Name()); err == nil {
			err = rerr
		}
		if err != nil {
			b.Fatalf("recycle page-cache pages: %v", err)
		}
	}
}

// threadCPU is the user plus system CPU of the calling OS thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD, Linux
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkColdBlobTTFB measures the time to the first byte of the answer
// (httptrace's GotFirstResponseByte, from sending the request) for GETs of
// uncached 1 MiB blobs through one portcullis, paired with a GET of the
// same blob from the upstream directly, alternating which goes first; each
// body is read whole and hashed. It reports the percentiles of both and of
// the time portcullis added within each pair.
func BenchmarkColdBlobTTFB(b *testing.B) {
	const (
		size    = 1 << 20
		perIter = 50
	)
	up := testregistry.Start(b)
	pc := startPortcullis(b, up, "")
	c := newClient(b)
	buf := make([]byte, copyBufSize)
	ttfb := func(url string) time.Duration {
		b.Helper()
		var start time.Time
		var first time.Duration
		trace := &httptrace.ClientTrace{
			WroteRequest:         func(httptrace.WroteRequestInfo) { start = time.Now() },
			GotFirstResponseByte: func() { first = time.Since(start) },
		}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(b.Context(), trace), http.MethodGet, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.CopyBuffer(h, resp.Body, buf)
		if err != nil || resp.StatusCode != http.StatusOK || n != size {
			b.Fatalf("GET %s: %s, %d bytes, %v", url, resp.Status, n, err)
		}
		if src := resp.Header.Get("Portcullis-Cache"); src != "" && src != "miss" {
			b.Fatalf("GET %s: Portcullis-Cache %q, want miss", url, src)
		}
		if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != resp.Header.Get("Docker-Content-Digest") {
			b.Fatalf("GET %s: body hashes to %s", url, got)
		}
		return first
	}
	// Connections up on both sides.
	if _, err := fetch(b.Context(), c, pc.URL+"/v2/", nil, false, buf); err != nil {
		b.Fatal(err)
	}
	if _, err := fetch(b.Context(), c, up.URL()+"/v2/", nil, false, buf); err != nil {
		b.Fatal(err)
	}

	var direct, proxied, added []float64
	seed := int64(1000)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		repo := fmt.Sprintf("bench/ttfb%d", i)
		blobs := make([]string, perIter)
		for j := range blobs {
			_, d := up.PushLargeBlobImage(b, repo, fmt.Sprint("v", j), size, seed)
			seed++
			blobs[j] = d.String()
		}
		b.StartTimer()
		for j, d := range blobs {
			var dd, pd time.Duration
			if (i+j)%2 == 0 {
				dd = ttfb(up.URL() + "/v2/" + repo + "/blobs/" + d)
				pd = ttfb(pc.URL + "/v2/" + repo + "/blobs/" + d)
			} else {
				pd = ttfb(pc.URL + "/v2/" + repo + "/blobs/" + d)
				dd = ttfb(up.URL() + "/v2/" + repo + "/blobs/" + d)
			}
			direct = append(direct, float64(dd.Microseconds())/1e3)
			proxied = append(proxied, float64(pd.Microseconds())/1e3)
			added = append(added, float64((pd-dd).Microseconds())/1e3)
		}
	}
	for _, m := range []struct {
		name string
		xs   []float64
	}{{"direct", direct}, {"proxy", proxied}, {"added", added}} {
		b.ReportMetric(percentileF(m.xs, 50), m.name+"-p50-ms")
		b.ReportMetric(percentileF(m.xs, 99), m.name+"-p99-ms")
	}
}

// percentileF of xs (which it sorts), nearest rank.
func percentileF(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(float64(len(xs))*p/100+0.5) - 1
	return xs[max(0, min(i, len(xs)-1))]
}
