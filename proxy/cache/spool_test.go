package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// A download in flight sent with SendTo (from the reader's own file on the
// spool, what net/http turns into sendfile) gives exactly what Read gives:
// the whole blob once verified, a bounded part when asked, and for a body
// that fails verification an error and never its last byte, also when the
// spool was renamed into the store or removed before the reader started.
func TestDownloadSendToMatchesRead(t *testing.T) {
	body := randomBytes(3<<20+123, 40)
	d := digest.FromBytes(body)
	bad := bytes.Clone(body)
	bad[len(bad)-10] ^= 0xff
	tests := []struct {
		name    string
		sent    []byte
		n       int64 // SendTo's bound; -1: all
		late    bool  // start reading only once the download ended
		want    []byte
		wantErr error
	}{
		{"whole", body, -1, false, body, nil},
		{"bounded", body, 1 << 20, false, body[:1<<20], nil},
		{"whole, after the commit renamed the spool", body, -1, true, body, nil},
		{"corrupt", bad, -1, false, nil, ErrDigestMismatch},
		{"corrupt, after the spool was removed", bad, -1, true, nil, ErrDigestMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, fsConfig(t.TempDir()), 0)
			f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
			var calls atomic.Int64
			h, err := f.Open(context.Background(), d, -1, slowSource(tc.sent, &calls))
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if h.Source != SourceMiss {
				t.Fatalf("source %q, want a download", h.Source)
			}
			if tc.late {
				waitDownloadEnded(t, f, d)
			}
			rc, err := h.Reader(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var got bytes.Buffer
			n, err := rc.(interface {
				SendTo(io.Writer, int64) (int64, error)
			}).SendTo(&got, tc.n)
			if n != int64(got.Len()) {
				t.Fatalf("SendTo reported %d bytes, wrote %d", n, got.Len())
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("SendTo of a corrupt download: %v, want %v", err, tc.wantErr)
				}
				if got.Len() >= len(body) {
					t.Fatalf("all %d bytes of a body that failed verification were sent", got.Len())
				}
				if !bytes.Equal(got.Bytes(), tc.sent[:got.Len()]) {
					t.Fatal("sent bytes differ from the upstream's")
				}
				waitDownloadEnded(t, f, d)
				assertNothingStored(t, s)
				return
			}
			if err != nil || !bytes.Equal(got.Bytes(), tc.want) {
				t.Fatalf("SendTo: %d bytes, %v; want %d bytes", got.Len(), err, len(tc.want))
			}
			// The reader may finish before the download commits: the test's
			// directory goes only once nothing writes to it.
			waitDownloadEnded(t, f, d)
		})
	}
}
