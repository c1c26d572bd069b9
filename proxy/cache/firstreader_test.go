package cache

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// firstReadSignal is an upstream body that closes read when it is first
// read.
type firstReadSignal struct {
	io.Reader
	read chan struct{}
}

func (b *firstReadSignal) Read(p []byte) (int, error) {
	select {
	case <-b.read:
	default:
		close(b.read)
	}
	return b.Reader.Read(p)
}

func (b *firstReadSignal) Close() error { return nil }

// A download reads its body only once a reader asked for bytes, the handle
// was closed unread, or the grace ran out: the request that started it
// sends its response headers before the body's first bytes take the CPU.
func TestDownloadWaitsForItsFirstReader(t *testing.T) {
	tests := []struct {
		name  string
		grace time.Duration
		// then does what lets the body be read, with the handle, and
		// reports whether the handle is still to be closed.
		then func(t *testing.T, h *Handle, body []byte) (stillOpen bool)
	}{
		{"a reader asks", time.Hour, func(t *testing.T, h *Handle, body []byte) bool {
			got, err := readAll(t, h)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, %v", len(got), err)
			}
			return true
		}},
		{"the handle closes unread", time.Hour, func(t *testing.T, h *Handle, body []byte) bool {
			h.Close()
			return false
		}},
		{"nobody reads within the grace", time.Millisecond, func(t *testing.T, h *Handle, body []byte) bool {
			return true
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, fsConfig(t.TempDir()), 0)
			f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
			f.readerGrace = tc.grace
			body := randomBytes(1<<20, 7)
			d := digest.FromBytes(body)
			src := &firstReadSignal{Reader: bytes.NewReader(body), read: make(chan struct{})}
			h, err := f.Open(context.Background(), d, -1, func(context.Context) (io.ReadCloser, int64, error) {
				return src, int64(len(body)), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.grace > time.Minute && closedWithin(src.read, 50*time.Millisecond) {
				t.Fatal("the body was read before anyone asked for it")
			}
			if tc.then(t, h, body) {
				defer h.Close()
			}
			if !closedWithin(src.read, 10*time.Second) {
				t.Fatal("the body was never read")
			}
			waitCommitted(t, s, d)
		})
	}
}
