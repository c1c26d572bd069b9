package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// progressConn.ReadFrom sends exactly what its source holds, in chunks,
// whether the source is a file (sendfile), a file inside a LimitedReader
// (a Range) or anything else; a LimitedReader is left as io.Copy would.
func TestProgressConnReadFrom(t *testing.T) {
	data := make([]byte, 3*sendChunk+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(t *testing.T, offset int64) *os.File {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name string
		src  func(t *testing.T) io.Reader
		want []byte
	}{
		{"whole file", func(t *testing.T) io.Reader { return open(t, 0) }, data},
		{"range of a file", func(t *testing.T) io.Reader { return io.LimitReader(open(t, 1000), sendChunk+7) }, data[1000 : 1000+sendChunk+7]},
		{"limit past the end", func(t *testing.T) io.Reader { return io.LimitReader(open(t, 10), int64(len(data))) }, data[10:]},
		{"empty range", func(t *testing.T) io.Reader { return io.LimitReader(open(t, 0), 0) }, nil},
		{"not a file", func(t *testing.T) io.Reader { return bytes.NewReader(data) }, data},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			sl := serverListener(ln, 1, 10*time.Second)
			defer sl.Close()
			got := make(chan []byte, 1)
			go func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				b, _ := io.ReadAll(c)
				got <- b
			}()
			c, err := sl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			src := tc.src(t)
			limit := int64(-1)
			if lr, ok := src.(*io.LimitedReader); ok {
				limit = lr.N
			}
			n, err := c.(io.ReaderFrom).ReadFrom(src)
			c.Close()
			if err != nil || n != int64(len(tc.want)) {
				t.Fatalf("ReadFrom = %d, %v; want %d", n, err, len(tc.want))
			}
			if b := <-got; !bytes.Equal(b, tc.want) {
				t.Fatalf("client got %d bytes, want %d (equal: false)", len(b), len(tc.want))
			}
			if lr, ok := src.(*io.LimitedReader); ok && lr.N != limit-n {
				t.Fatalf("limit left at %d, want %d", lr.N, limit-n)
			}
		})
	}
}
