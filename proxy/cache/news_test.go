package cache

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// closedWithin reports whether ch is closed within d.
func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// News of a download's progress is batched for readers that caught up
// (see notifyBytes): nobody is woken while nobody waits, the first bytes
// and every notifyBytes wake waiting readers at once, and a smaller batch
// reaches them by the timer, so bytes are never held back for good.
func TestDownloadNewsIsBatched(t *testing.T) {
	tests := []struct {
		name     string
		before   int64   // written before the reader waits
		advances []int64 // while it waits
		atOnce   bool    // the last advance wakes it before returning
	}{
		{"first bytes", 0, []int64{100}, true},
		{"first bytes after a first read of one byte (held back)", 1, []int64{100}, true},
		{"a batch's worth", 1000, []int64{notifyBytes}, true},
		{"a batch's worth in pieces", 1000, []int64{notifyBytes / 2, notifyBytes / 2}, true},
		{"a small batch, by the timer", 1000, []int64{16 << 10}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dl := newDownload("")
			if tc.before > 0 {
				dl.advance(tc.before)
			}
			seen, _, _ := dl.visible()
			woke := make(chan struct{})
			go func() {
				if err := dl.wait(context.Background(), seen); err != nil {
					t.Error(err)
				}
				close(woke)
			}()
			// Until the reader registered, advancing would tell it at once.
			deadline := time.Now().Add(10 * time.Second)
			for {
				dl.mu.Lock()
				waiting := dl.waiting
				dl.mu.Unlock()
				if waiting {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("reader never waited")
				}
				time.Sleep(time.Millisecond)
			}
			dl.mu.Lock()
			changed := dl.changed
			dl.mu.Unlock()
			for _, n := range tc.advances {
				dl.advance(n)
			}
			if tc.atOnce {
				select {
				case <-changed:
				default:
					t.Fatal("the reader was not woken by the advance")
				}
			}
			if !closedWithin(woke, 10*time.Second) {
				t.Fatal("the reader was never woken: bytes held back")
			}
			if avail, _, _ := dl.visible(); avail <= seen {
				t.Fatalf("woken with %d bytes visible, had seen %d", avail, seen)
			}
		})
	}
}

// On a fast link a download reads the upstream a large buffer at a time
// (readbuf.go): waiting readers hear of such reads in batches of several,
// not after each one, while the first bytes and a full batch still go out
// at once.
func TestNewsDue(t *testing.T) {
	tests := []struct {
		name               string
		announced, written int64
		want               bool
	}{
		{"first bytes", 0, 100, true},
		{"first bytes after a held-back one", 1, 100, true},
		{"one large read", 1000, 1000 + largeReadBuffer, false},
		{"three large reads", 1000, 1000 + 3*largeReadBuffer, false},
		{"a batch", 1000, 1000 + notifyBytes, true},
		{"more than a batch", 1000, 1000 + notifyBytes + 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := newsDue(tc.announced, tc.written); got != tc.want {
				t.Fatalf("newsDue(%d, %d) = %v, want %v", tc.announced, tc.written, got, tc.want)
			}
		})
	}
}

// While no reader waits, progress wakes nobody and allocates nothing.
func TestDownloadProgressWithoutWaitersIsQuiet(t *testing.T) {
	dl := newDownload("")
	changed := dl.changed
	for range 100 {
		dl.advance(64 << 10)
	}
	if dl.changed != changed {
		t.Fatal("advance replaced the news channel with nobody waiting")
	}
	if allocs := testing.AllocsPerRun(100, func() { dl.advance(64 << 10) }); allocs != 0 {
		t.Fatalf("advance allocates %.1f times with nobody waiting", allocs)
	}
}

// Bytes that arrived before the upstream paused reach the readers while it
// pauses: here the upstream sends the rest only once a reader received
// every byte it could (all but the held-back last one) of the first part.
func TestBytesBeforeAPauseReachReaders(t *testing.T) {
	body := randomBytes(600<<10+7, 41)
	d := digest.FromBytes(body)
	first := 300<<10 + 3 // not a multiple of notifyBytes nor of any read size
	for _, how := range []string{"Read", "SendTo"} {
		t.Run(how, func(t *testing.T) {
			s := openStore(t, fsConfig(t.TempDir()), 0)
			f := NewFetcher(s, time.Minute, 30*time.Second, s.log)
			received := make(chan struct{})
			src := func(ctx context.Context) (io.ReadCloser, int64, error) {
				pr, pw := io.Pipe()
				go func() {
					// Small writes with gaps, as a socket's reads would
					// come, so that the reader catches up and waits.
					for off := 0; off < first; off += 16 << 10 {
						if _, err := pw.Write(body[off:min(off+16<<10, first)]); err != nil {
							return
						}
						time.Sleep(200 * time.Microsecond)
					}
					select {
					case <-received:
						pw.Write(body[first:])
						pw.Close()
					case <-time.After(20 * time.Second):
						pw.CloseWithError(io.ErrUnexpectedEOF)
					}
				}()
				return pr, int64(len(body)), nil
			}
			h, err := f.Open(context.Background(), d, -1, src)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			rc, err := h.Reader(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			w := &signalWriter{at: first - 1, reached: received}
			var n int64
			if how == "SendTo" {
				n, err = rc.(interface {
					SendTo(io.Writer, int64) (int64, error)
				}).SendTo(w, -1)
			} else {
				n, err = io.Copy(w, readerOnly{rc})
			}
			if err != nil || n != int64(len(body)) || !bytes.Equal(w.buf.Bytes(), body) {
				t.Fatalf("%s: %d bytes, %v (the bytes before the pause never reached the reader?)", how, n, err)
			}
			waitDownloadEnded(t, f, d)
		})
	}
}

// signalWriter collects what it is given and closes reached once it holds
// at least at bytes.
type signalWriter struct {
	buf     bytes.Buffer
	at      int
	reached chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	before := w.buf.Len()
	w.buf.Write(p)
	if before < w.at && w.buf.Len() >= w.at {
		close(w.reached)
	}
	return len(p), nil
}

// sendCounter counts the sends a follower of a download makes: SendTo
// hands each run of newly visible bytes to ReadFrom once (a sendfile call
// and, before it, a wake-up, when w is a connection).
type sendCounter struct {
	sends int
	n     int64
}

func (w *sendCounter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func (w *sendCounter) ReadFrom(r io.Reader) (int64, error) {
	w.sends++
	return io.Copy(struct{ io.Writer }{w}, r)
}

// BenchmarkDownloadFollower follows a download whose upstream delivers
// 16 KiB at a time with short pauses (a fast internet link's socket reads)
// and reports the sends per MiB the follower made: every one is a wake-up
// and a sendfile call in the real server.
func BenchmarkDownloadFollower(b *testing.B) {
	const size = 8 << 20
	body := randomBytes(size, 42)
	d := digest.FromBytes(body)
	src := func(ctx context.Context) (io.ReadCloser, int64, error) {
		pr, pw := io.Pipe()
		go func() {
			for off := 0; off < size; off += 16 << 10 {
				if _, err := pw.Write(body[off : off+16<<10]); err != nil {
					return
				}
				time.Sleep(50 * time.Microsecond)
			}
			pw.Close()
		}()
		return pr, size, nil
	}
	var sends, pulls int
	for b.Loop() {
		b.StopTimer()
		s := openStore(b, fsConfig(b.TempDir()), 0)
		f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
		b.StartTimer()
		h, err := f.Open(context.Background(), d, -1, src)
		if err != nil {
			b.Fatal(err)
		}
		rc, err := h.Reader(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		w := &sendCounter{}
		n, err := rc.(interface {
			SendTo(io.Writer, int64) (int64, error)
		}).SendTo(w, -1)
		rc.Close()
		h.Close()
		if err != nil || n != size || w.n != size {
			b.Fatalf("follower: %d bytes, %v", n, err)
		}
		sends += w.sends
		pulls++
		b.StopTimer()
		waitDownloadEnded(b, f, d)
		b.StartTimer()
	}
	b.ReportMetric(float64(sends)/float64(pulls)/(size>>20), "sends/MiB")
}
