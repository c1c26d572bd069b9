package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/telemetry"
)

// Source opens a blob's bytes upstream. size is -1 when unknown.
type Source func(ctx context.Context) (body io.ReadCloser, size int64, err error)

// Fetcher serves blobs from the store, or else from one shared upstream
// download per digest that every concurrent request reads as it arrives.
type Fetcher struct {
	store   *Store
	timeout time.Duration
	idle    time.Duration
	log     *slog.Logger

	// leases, when set, make downloads single-flight across replicas
	// sharing the storage (shared.go).
	leases Leases
	owner  string

	metrics *telemetry.CacheMetrics // nil: none
	tracer  trace.Tracer            // nil: no spans (tracing.go)

	buffers *readBuffers

	readerGrace time.Duration // firstReaderGrace, but for tests

	mu       sync.Mutex
	inflight map[digest.Digest]*download
}

// NewFetcher makes a fetcher. timeout bounds a whole download, idle the time
// without a byte from upstream; a download runs to completion (or to these
// limits) even when every client that wanted it has gone.
func NewFetcher(s *Store, timeout, idle time.Duration, log *slog.Logger, opts ...FetcherOption) *Fetcher {
	f := &Fetcher{store: s, timeout: timeout, idle: idle, log: log, buffers: newReadBuffers(), readerGrace: firstReaderGrace, inflight: map[digest.Digest]*download{}}
	for _, o := range opts {
		o(f)
	}
	return f
}

// WithMetrics counts the downloads in progress.
func WithMetrics(m *telemetry.CacheMetrics) FetcherOption {
	return func(f *Fetcher) { f.metrics = m }
}

// Where a Handle's bytes come from.
const (
	SourceHit       = "hit"       // the store
	SourceMiss      = "miss"      // a download this request started
	SourceCoalesced = "coalesced" // a download another request started
)

// Handle is a blob being served. Close it when done.
type Handle struct {
	Size   int64 // -1 when the upstream did not say
	Source string
	blob   *Blob
	dl     *download
}

// Reader returns the whole blob, verified as it goes out: the last byte is
// held back until the bytes hashed to the digest, so a reader that received
// every byte received verified bytes, and any other sees an error instead of
// a short body it might take as complete.
func (h *Handle) Reader(ctx context.Context) (io.ReadCloser, error) {
	if h.blob != nil {
		return h.blob.Reader(ctx)
	}
	return &downloadReader{ctx: ctx, dl: h.dl}, nil
}

// ErrUnverified means a range was asked of a download whose digest is not
// verified yet: a range cannot be checked by whoever receives it, so it is
// only ever cut from verified bytes.
var ErrUnverified = errors.New("blob download not verified yet")

// RangeReader returns the bytes from offset on, cut from verified bytes
// only: a stored blob is verified whole first (once per process and file,
// see Blob.RangeReader); a download in progress answers ErrUnverified until
// its digest matched.
func (h *Handle) RangeReader(ctx context.Context, offset int64) (io.ReadCloser, error) {
	if h.blob != nil {
		return h.blob.RangeReader(ctx, offset)
	}
	_, done, err := h.dl.visible()
	if err != nil {
		return nil, err
	}
	if !done {
		return nil, ErrUnverified
	}
	return &downloadReader{ctx: ctx, dl: h.dl, off: offset}, nil
}

// Close releases the handle.
func (h *Handle) Close() error {
	if h.blob != nil {
		return h.blob.Close()
	}
	h.dl.letIn()
	h.dl.release()
	return nil
}

// Open returns d from the store, or joins or starts its download from src.
// size is what the descriptor that led to d declares, -1 when unknown: a
// download stops there, or at the store's MaxBlobSize when unknown.
func (f *Fetcher) Open(ctx context.Context, d digest.Digest, size int64, src Source) (*Handle, error) {
	b, err := f.lookup(ctx, d)
	if err == nil {
		return &Handle{Size: b.Size, Source: SourceHit, blob: b}, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	f.mu.Lock()
	dl, joined := f.inflight[d]
	if !joined {
		// A download may have committed and left the table since the
		// lookup above; the table is only left after the commit has added
		// the blob to the in-memory index, so a second, index-only look
		// under the lock settles it without a driver round trip.
		if b, ok := f.store.openIndexed(d); ok {
			f.mu.Unlock()
			return &Handle{Size: b.Size, Source: SourceHit, blob: b}, nil
		}
		dl = newDownload(d)
		f.inflight[d] = dl
		go f.run(f.downloadContext(ctx), dl, size, src)
	}
	dl.acquire()
	f.mu.Unlock()

	select {
	case <-dl.started:
	case <-ctx.Done():
		dl.release()
		return nil, ctx.Err()
	}
	if errors.Is(dl.startErr, errStoredElsewhere) {
		dl.release()
		b, err := f.store.Open(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("open blob %s another replica stored: %w", d, err)
		}
		return &Handle{Size: b.Size, Source: SourceHit, blob: b}, nil
	}
	if dl.startErr != nil {
		dl.release()
		return nil, dl.startErr
	}
	source := SourceMiss
	if joined {
		source = SourceCoalesced
	}
	return &Handle{Size: dl.size, Source: source, dl: dl}, nil
}

// InFlight reports whether d is being downloaded right now.
func (f *Fetcher) InFlight(d digest.Digest) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.inflight[d]
	return ok
}

// Downloads counts the downloads running now; a download ends once its
// blob is committed (or dropped), which may be after its last client has
// every byte.
func (f *Fetcher) Downloads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.inflight)
}

func (f *Fetcher) run(parent context.Context, dl *download, declared int64, src Source) {
	ctx, cancel := context.WithTimeout(parent, f.timeout)
	defer cancel()
	start := time.Now()
	var began bool
	release, err := f.takeTurn(ctx, dl.d)
	if err == nil {
		f.metrics.DownloadStarted()
		began, err = f.download(ctx, cancel, dl, declared, src)
		f.metrics.DownloadEnded()
		release()
	}
	f.store.refillSpares()
	// Leave the in-flight table before anyone hears of a failure, so a
	// client that retries starts a fresh download instead of rejoining this
	// one. On success the blob is committed by now: later requests find it
	// in the store, earlier ones still hold the spool open.
	f.mu.Lock()
	delete(f.inflight, dl.d)
	f.mu.Unlock()
	switch {
	case err != nil && !began:
		dl.begin(0, nil, err)
	case err != nil:
		dl.fail(err)
	}
	switch {
	case errors.Is(err, errStoredElsewhere):
		f.log.Info("blob stored by another replica", "digest", dl.d, "waited", time.Since(start))
	case err != nil:
		f.log.Warn("blob download failed", "digest", dl.d, "err", err, "duration", time.Since(start))
	default:
		f.log.Info("blob cached", "digest", dl.d, "bytes", dl.written, "duration", time.Since(start))
	}
	dl.release()
}

// ErrTooLarge means a blob is larger than its descriptor declared or than
// the store's MaxBlobSize.
var ErrTooLarge = errors.New("blob too large")

// download streams src into a spool file that readers follow. began reports
// whether readers were let in (dl.begin) before an error. It never writes
// more than the bound (declared size, else MaxBlobSize) to the spool.
func (f *Fetcher) download(ctx context.Context, cancel context.CancelFunc, dl *download, declared int64, src Source) (began bool, err error) {
	limit, what := f.store.maxBlobSize, "cache.max_blob_size"
	if declared >= 0 {
		if declared > limit {
			return false, fmt.Errorf("download blob %s: its descriptor declares %d bytes, more than %s (%d): %w", dl.d, declared, what, limit, ErrTooLarge)
		}
		limit, what = declared, "the size its descriptor declares"
	}
	body, size, err := src(ctx)
	if err != nil {
		return false, err
	}
	defer body.Close()
	if size > limit {
		// Refused before reading a byte: the answer says it is too big.
		return false, fmt.Errorf("download blob %s: upstream announced %d bytes, more than %s (%d): %w", dl.d, size, what, limit, ErrTooLarge)
	}
	if size >= 0 {
		limit, what = size, "the size the upstream announced"
	}
	in, err := f.store.newIngest(dl.d.Algorithm())
	if err != nil {
		return false, err
	}
	in.size = max(size, 0)
	rf, err := os.Open(in.path)
	if err != nil {
		in.cancel()
		return false, fmt.Errorf("open spool file: %w", err)
	}
	dl.begin(size, rf, nil)
	dl.awaitFirstReader(ctx, f.readerGrace)

	idle := time.AfterFunc(f.idle, cancel)
	defer idle.Stop()
	buf, putBuf := f.buffers.get()
	defer putBuf()
	for {
		// Read at most one byte past the bound: enough to know it was
		// crossed, and nothing past it reaches the disk.
		n, rerr := body.Read(buf[:min(int64(len(buf)), limit-in.n+1)])
		if in.n+int64(n) > limit {
			in.cancel()
			return true, fmt.Errorf("download blob %s: upstream sent more than %s (%d bytes): %w", dl.d, what, limit, ErrTooLarge)
		}
		if n > 0 {
			idle.Reset(f.idle)
			if _, werr := in.Write(buf[:n]); werr != nil {
				in.cancel()
				return true, werr
			}
			dl.advance(int64(n))
			// The spool counts toward MaxBytes: make room as it grows.
			f.store.evict(ctx)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			in.cancel()
			if ctx.Err() != nil {
				return true, fmt.Errorf("download blob %s: stalled or exceeded its time limit after %d bytes: %w", dl.d, in.n, ctx.Err())
			}
			return true, fmt.Errorf("download blob %s after %d bytes: %w", dl.d, in.n, rerr)
		}
	}
	idle.Stop()
	if size >= 0 && in.n != size {
		in.cancel()
		return true, fmt.Errorf("download blob %s: upstream announced %d bytes, sent %d", dl.d, size, in.n)
	}
	if got := in.hasher.Digest(); got != dl.d {
		in.cancel()
		return true, fmt.Errorf("download blob %s: %w: upstream bytes hash to %s", dl.d, ErrDigestMismatch, got)
	}
	dl.finish() // verified: readers may have the last byte now
	commitCtx, cancelCommit := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancelCommit()
	if err := f.commit(commitCtx, in, dl.d); err != nil {
		// The bytes were good and served; only caching failed.
		f.log.Error("cache blob", "digest", dl.d, "err", err)
	}
	return true, nil
}

// Readers that caught up with a download wait for news of more bytes.
// Waking them for every read of the upstream's socket costs a goroutine
// wake-up, often a thread hand-off (a futex call each way), and a
// sendfile call per read; so news is batched: the first bytes go out at
// once (time to first byte), later ones once notifyBytes more arrived or
// notifyDelay after the first of them, whichever comes first. On a fast
// internet link (16 to 64 KiB per read) the timer decides
// (BenchmarkDownloadFollower: 64 sends per MiB unbatched, about 13 with
// batches). On loopback or in a data centre reads are whole 1 MiB buffers
// (readbuf.go), so notifyBytes decides: 4 MiB, not one read, took the
// futex calls of a 256 MiB cold pull from about 700 to 350
// (BenchmarkColdPull256MiB, test/bench/README.md). A reader lags the
// download by at most one batch; the delay is a timer, so bytes that
// arrive before the upstream stalls still reach the readers within
// notifyDelay; the last byte is held back until verified anyway, and
// finish and fail tell at once.
const (
	notifyBytes = 4 << 20
	notifyDelay = 5 * time.Millisecond
)

// firstReaderGrace bounds how long a download that has its upstream's
// answer waits for its first reader before it reads the body. Closing
// started readies the request that began the download, but on this
// goroutine's processor, behind it; and while the upstream's bytes keep
// coming this goroutine does not block, so on a busy machine that request
// sent its response headers only after the body's first megabytes were
// read, hashed and written (0.9-1.4 ms of the 1.6-3 ms the proxy added to
// the time to first byte at the median, BenchmarkColdBlobTTFB). A reader
// that never comes, or a client slow to take its headers, costs the
// download this much, once.
const firstReaderGrace = 10 * time.Millisecond

// download is one upstream fetch shared by every reader of the digest.
type download struct {
	d        digest.Digest
	started  chan struct{} // closed once size/rf or startErr is set
	startErr error
	size     int64
	rf       *os.File // read handle on the spool file

	// readerIn is closed (once, through letIn) when a reader first asks
	// for bytes or a handle is closed without reading: see
	// firstReaderGrace.
	readerIn  chan struct{}
	letInOnce sync.Once

	mu      sync.Mutex
	written int64
	done    bool // every byte written and verified
	err     error
	changed chan struct{} // closed and replaced on every change readers wait for
	refs    int
	// waiting: a reader waits on changed; announced is what had been
	// written when it began to (or at the last news since).
	waiting   bool
	announced int64
	news      *time.Timer // sends batched news (see notifyBytes); nil until needed
	newsArmed bool
}

func (dl *download) begin(size int64, rf *os.File, err error) {
	dl.size, dl.rf, dl.startErr = size, rf, err
	close(dl.started)
}

func newDownload(d digest.Digest) *download {
	return &download{d: d, started: make(chan struct{}), readerIn: make(chan struct{}), changed: make(chan struct{}), refs: 1}
}

func (dl *download) letIn() { dl.letInOnce.Do(func() { close(dl.readerIn) }) }

// awaitFirstReader waits, at most grace, until a reader asked for bytes.
func (dl *download) awaitFirstReader(ctx context.Context, grace time.Duration) {
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-dl.readerIn:
	case <-timer.C:
	case <-ctx.Done():
	}
}

func (dl *download) notifyLocked() {
	close(dl.changed)
	dl.changed = make(chan struct{})
	dl.waiting = false
	dl.announced = dl.written
	if dl.newsArmed {
		dl.news.Stop()
		dl.newsArmed = false
	}
}

func (dl *download) advance(n int64) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.written += n
	if !dl.waiting {
		return // nobody to tell: readers look at written before they wait
	}
	switch {
	case newsDue(dl.announced, dl.written):
		dl.notifyLocked()
	case dl.newsArmed:
	case dl.news == nil:
		dl.news = time.AfterFunc(notifyDelay, dl.sendNews)
		dl.newsArmed = true
	default:
		dl.news.Reset(notifyDelay)
		dl.newsArmed = true
	}
}

// newsDue reports whether readers waiting since announced bytes were
// written must hear of written now rather than by the timer: they have no
// byte yet (the last written one is held back), or a batch is full.
func newsDue(announced, written int64) bool {
	return announced <= 1 || written-announced >= notifyBytes
}

// sendNews tells waiting readers of bytes that advance held back.
func (dl *download) sendNews() {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.newsArmed = false
	if dl.waiting && dl.written > dl.announced {
		dl.notifyLocked()
	}
}

func (dl *download) finish() {
	dl.mu.Lock()
	dl.done = true
	dl.notifyLocked()
	dl.mu.Unlock()
}

func (dl *download) fail(err error) {
	dl.mu.Lock()
	if !dl.done {
		dl.err = err
	}
	dl.notifyLocked()
	dl.mu.Unlock()
}

// visible is how far readers may read. The last byte is held back until
// the digest is verified, so no client ever receives a complete body that
// failed verification: it sees the connection fail instead.
func (dl *download) visible() (avail int64, done bool, err error) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.visibleLocked()
}

func (dl *download) visibleLocked() (avail int64, done bool, err error) {
	avail = dl.written
	if !dl.done && avail > 0 {
		avail--
	}
	return avail, dl.done, dl.err
}

// wait blocks until more than seen bytes are visible, or the download
// ended, or ctx is done. seen is what visible said; if that changed since,
// it returns at once.
func (dl *download) wait(ctx context.Context, seen int64) error {
	dl.mu.Lock()
	if avail, done, err := dl.visibleLocked(); avail != seen || done || err != nil {
		dl.mu.Unlock()
		return nil
	}
	if !dl.waiting {
		dl.waiting = true
		dl.announced = dl.written
	}
	changed := dl.changed
	dl.mu.Unlock()
	select {
	case <-changed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (dl *download) acquire() {
	dl.mu.Lock()
	dl.refs++
	dl.mu.Unlock()
}

func (dl *download) release() {
	dl.mu.Lock()
	dl.refs--
	last := dl.refs == 0
	dl.mu.Unlock()
	if last && dl.rf != nil {
		dl.rf.Close()
	}
}

// downloadReader follows a download in progress.
type downloadReader struct {
	ctx context.Context
	dl  *download
	off int64
}

func (r *downloadReader) Read(p []byte) (int, error) {
	r.dl.letIn()
	for {
		avail, done, err := r.dl.visible()
		if r.off < avail {
			n := min(int64(len(p)), avail-r.off)
			got, rerr := r.dl.rf.ReadAt(p[:n], r.off)
			r.off += int64(got)
			if rerr != nil && !(errors.Is(rerr, io.EOF) && got > 0) {
				return got, fmt.Errorf("read spool of %s: %w", r.dl.d, rerr)
			}
			return got, nil
		}
		if err != nil {
			return 0, err
		}
		if done {
			return 0, io.EOF
		}
		if err := r.dl.wait(r.ctx, avail); err != nil {
			return 0, err
		}
	}
}

// Close is a no-op: the Handle owns the download reference.
func (r *downloadReader) Close() error { return nil }

// WriteTo sends the rest of the download to w; see SendTo.
func (r *downloadReader) WriteTo(w io.Writer) (int64, error) { return r.SendTo(w, -1) }

// SendTo sends up to n bytes of the download (n < 0: all of it) to w as
// they become visible, from a file of its own on the spool, so that when
// w's ReadFrom reaches a TCP connection (net/http's response does) the
// bytes go from the page cache to the socket with sendfile: no copy
// through user space, however many clients follow the download. The last
// byte is held back until verified, as with Read. Where the spool cannot
// be opened again it copies through Read.
func (r *downloadReader) SendTo(w io.Writer, n int64) (int64, error) {
	r.dl.letIn()
	f, err := reopen(r.dl.rf)
	if err != nil {
		var src io.Reader = readerOnly{r}
		if n >= 0 {
			src = io.LimitReader(src, n)
		}
		return io.Copy(w, src)
	}
	defer f.Close()
	if _, err := f.Seek(r.off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("read spool of %s at %d: %w", r.dl.d, r.off, err)
	}
	end := int64(-1)
	if n >= 0 {
		end = r.off + n
	}
	var sent int64
	for end < 0 || r.off < end {
		seen, done, derr := r.dl.visible()
		avail := seen
		if end >= 0 {
			avail = min(avail, end)
		}
		if r.off < avail {
			// A *io.LimitedReader around the file: what net's sendfile
			// path recognises, bounded to the verified-so-far bytes.
			want := avail - r.off
			m, err := io.Copy(w, &io.LimitedReader{R: f, N: want})
			r.off += m
			sent += m
			if err != nil {
				return sent, err
			}
			if m < want {
				return sent, fmt.Errorf("read spool of %s: %w after %d bytes", r.dl.d, io.ErrUnexpectedEOF, r.off)
			}
			continue
		}
		if derr != nil {
			return sent, derr
		}
		if done {
			return sent, nil
		}
		if err := r.dl.wait(r.ctx, seen); err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// readerOnly hides WriteTo, so io.Copy reads instead of calling it again.
type readerOnly struct{ io.Reader }
