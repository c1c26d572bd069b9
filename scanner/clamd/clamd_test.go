package clamd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/test/clamdserver"
)

func TestScanRealClamd(t *testing.T) {
	// Two daemons: with both signatures in one database, the body
	// signature would answer for the exact file too.
	hashes := clamdserver.Start(t, clamdserver.Config{Signatures: clamdserver.HashSignatures()})
	bodies := clamdserver.Start(t, clamdserver.Config{Signatures: clamdserver.BodySignatures()})
	eicar := clamdserver.EICAR()
	padded := append(append([]byte("some text before\n"), eicar...), "\nand after\n"...)
	big := bytes.Repeat([]byte("clean data "), 20000) // several chunks
	const unofficial = ".UNOFFICIAL"                  // clamd's suffix for a database not from ClamAV
	tests := []struct {
		name      string
		srv       *clamdserver.Server
		data      []byte
		signature string
	}{
		{"eicar by its hash signature", hashes, eicar, clamdserver.HashSignatureName + unofficial},
		{"eicar inside a file: no hash hit", hashes, padded, ""},
		{"eicar by the body signature", bodies, eicar, clamdserver.BodySignatureName + unofficial},
		{"eicar inside a file by the body signature", bodies, padded, clamdserver.BodySignatureName + unofficial},
		{"clean file", hashes, []byte("#!/bin/sh\necho hello\n"), ""},
		{"clean file, body database", bodies, []byte("#!/bin/sh\necho hello\n"), ""},
		{"empty file", bodies, nil, ""},
		{"clean file of several chunks", bodies, big, ""},
	}
	for _, tc := range tests {
		for _, addr := range []string{tc.srv.UnixURL(), tc.srv.TCPURL()} {
			t.Run(addr[:4]+"/"+tc.name, func(t *testing.T) {
				c, err := New(addr, Options{ChunkSize: 4096})
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Ping(context.Background()); err != nil {
					t.Fatal(err)
				}
				if v, err := c.Version(context.Background()); err != nil || !strings.HasPrefix(v, "ClamAV 1.") {
					t.Fatalf("version %q, %v", v, err)
				}
				res, err := c.Scan(context.Background(), bytes.NewReader(tc.data), int64(len(tc.data)))
				if err != nil {
					t.Fatal(err)
				}
				if res.Found != (tc.signature != "") || res.Signature != tc.signature {
					t.Fatalf("result %+v, want %q", res, tc.signature)
				}
				if sum := sha256.Sum256(tc.data); res.SHA256 != hex.EncodeToString(sum[:]) {
					t.Fatalf("sha256 %s, want %x", res.SHA256, sum)
				}
				if res.Found {
					f := res.Finding("/usr/bin/x", "sha256:aa")
					if f.Kind != vulndb.KindMalware || f.ID != tc.signature || f.Path != "/usr/bin/x" || f.Layer != "sha256:aa" || f.SHA256 != res.SHA256 || f.Severity != "CRITICAL" {
						t.Fatalf("finding %+v", f)
					}
				}
			})
		}
	}
}

func TestClamdDownIsAnError(t *testing.T) {
	srv := clamdserver.Start(t, clamdserver.Config{Signatures: clamdserver.HashSignatures()})
	for _, addr := range []string{srv.UnixURL(), srv.TCPURL()} {
		c, err := New(addr, Options{DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Scan(context.Background(), strings.NewReader("x"), 1); err != nil {
			t.Fatalf("%s before the stop: %v", addr, err)
		}
	}
	srv.Stop()
	for _, addr := range []string{srv.UnixURL(), srv.TCPURL()} {
		c, _ := New(addr, Options{DialTimeout: 2 * time.Second})
		res, err := c.Scan(context.Background(), strings.NewReader("x"), 1)
		if err == nil || errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s down: result %+v, error %v; want a connect error", addr, res, err)
		}
		if err := c.Ping(context.Background()); err == nil {
			t.Fatalf("%s down: PING answered", addr)
		}
	}
}

func TestClamdSizeLimitIsAnError(t *testing.T) {
	srv := clamdserver.Start(t, clamdserver.Config{Signatures: clamdserver.HashSignatures(), StreamMaxLength: "1K"})
	c, err := New(srv.TCPURL(), Options{ChunkSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("a"), 64<<10)
	res, err := c.Scan(context.Background(), bytes.NewReader(data), int64(len(data)))
	if !errors.Is(err, ErrSizeLimit) {
		t.Fatalf("result %+v, error %v; want ErrSizeLimit", res, err)
	}
}

func TestTooLargeIsNotSent(t *testing.T) {
	// Nothing listens there: the file must be refused before dialling.
	c, err := New("tcp://127.0.0.1:1", Options{MaxFile: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Scan(context.Background(), strings.NewReader("01234567890"), 11); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error %v, want ErrTooLarge", err)
	}
}

// fake is a hostile clamd on loopback: answer decides what each connection
// gets once the client sent its stream.
func fake(t *testing.T, answer func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				if !readStream(conn) {
					return
				}
				answer(conn)
			}()
		}
	}()
	return "tcp://" + ln.Addr().String()
}

// readStream reads "zINSTREAM\0" and the chunks up to the zero-length one.
func readStream(conn net.Conn) bool {
	cmd := make([]byte, len("zINSTREAM\x00"))
	if _, err := ioReadFull(conn, cmd); err != nil || string(cmd) != "zINSTREAM\x00" {
		return false
	}
	for {
		var l [4]byte
		if _, err := ioReadFull(conn, l[:]); err != nil {
			return false
		}
		n := int(l[0])<<24 | int(l[1])<<16 | int(l[2])<<8 | int(l[3])
		if n == 0 {
			return true
		}
		if _, err := ioReadFull(conn, make([]byte, n)); err != nil {
			return false
		}
	}
}

func ioReadFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestHostileClamd(t *testing.T) {
	tests := []struct {
		name      string
		answer    func(net.Conn)
		wantErr   string
		wantFound string
	}{
		{"endless answer", func(c net.Conn) {
			chunk := bytes.Repeat([]byte("A"), 4096)
			for range 10000 { // bounded: the client stops reading long before
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}, "longer than", ""},
		{"garbage", func(c net.Conn) { c.Write([]byte("\x01\x02\xff garbage\x00")) }, "not printable", ""},
		{"silence", func(c net.Conn) { time.Sleep(3 * time.Second) }, "timeout", ""},
		{"closed without answer", func(c net.Conn) {}, "without an answer", ""},
		{"unknown answer", func(c net.Conn) { c.Write([]byte("stream: MAYBE\x00")) }, "not OK, FOUND or ERROR", ""},
		{"found without a name", func(c net.Conn) { c.Write([]byte("stream:  FOUND\x00")) }, "clamd answered", ""},
		{"found with a space in the name", func(c net.Conn) { c.Write([]byte("stream: a b FOUND\x00")) }, "malformed name", ""},
		{"error answer", func(c net.Conn) { c.Write([]byte("stream: Can't allocate memory ERROR\x00")) }, "ERROR", ""},
		{"found", func(c net.Conn) { c.Write([]byte("stream: Win.Test.EICAR_HDB-1 FOUND\x00")) }, "", "Win.Test.EICAR_HDB-1"},
		{"ok without NUL then close", func(c net.Conn) { c.Write([]byte("stream: OK")) }, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := fake(t, tc.answer)
			c, err := New(addr, Options{ReadTimeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Scan(context.Background(), strings.NewReader("data"), 4)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("result %+v, error %v; want an error with %q", res, err, tc.wantErr)
				}
				return
			}
			if err != nil || res.Signature != tc.wantFound || res.Found != (tc.wantFound != "") {
				t.Fatalf("result %+v, error %v; want %q", res, err, tc.wantFound)
			}
		})
	}
}

func TestConnectionsAreBounded(t *testing.T) {
	var open, most, limit atomic.Int32
	addr := fake(t, func(c net.Conn) {
		n := open.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		// Without the bound another connection arrives meanwhile: wait
		// for it a little (bounded), so that it is seen open.
		for i := 0; i < 20 && open.Load() <= int32(limit.Load()); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		// Counted closed before the client can see the answer and
		// hand its slot on.
		open.Add(-1)
		c.Write([]byte("stream: OK\x00"))
	})
	for _, conns := range []int{1, 3} {
		most.Store(0)
		limit.Store(int32(conns))
		c, err := New(addr, Options{Conns: conns})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.Scan(context.Background(), strings.NewReader("x"), 1)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := most.Load(); got > int32(conns) || got < 1 {
			t.Fatalf("Conns %d: %d connections open at once", conns, got)
		}
	}
}

func TestReaderShorterOrLongerThanSize(t *testing.T) {
	addr := fake(t, func(c net.Conn) { c.Write([]byte("stream: OK\x00")) })
	c, _ := New(addr, Options{})
	if _, err := c.Scan(context.Background(), strings.NewReader("abc"), 10); err == nil {
		t.Fatal("short reader accepted")
	}
	if _, err := c.Scan(context.Background(), strings.NewReader("abcdef"), 3); err == nil {
		t.Fatal("long reader accepted")
	}
}

func TestCancelledScan(t *testing.T) {
	addr := fake(t, func(c net.Conn) { time.Sleep(5 * time.Second) })
	c, _ := New(addr, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := c.Scan(ctx, strings.NewReader("x"), 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestParseAddress(t *testing.T) {
	good := map[string]Address{
		"unix:///run/clamav/clamd.ctl": {"unix", "/run/clamav/clamd.ctl"},
		"tcp://127.0.0.1:3310":         {"tcp", "127.0.0.1:3310"},
		"tcp://[::1]:3310":             {"tcp", "[::1]:3310"},
		"tcp://clamd.internal:3310/":   {"tcp", "clamd.internal:3310"},
	}
	for in, want := range good {
		if got, err := ParseAddress(in); err != nil || got != want {
			t.Errorf("ParseAddress(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/run/clamd.ctl", "unix://run/clamd.ctl", "unix:///a/../b", "tcp://127.0.0.1", "tcp://:3310",
		"tcp://127.0.0.1:0", "tcp://127.0.0.1:99999", "http://127.0.0.1:3310", "tcp://u:p@h:1", "tcp://h:1?x", "tcp://h:1/path"} {
		if got, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) = %+v, accepted", bad, got)
		}
	}
}

func FuzzParseStreamAnswer(f *testing.F) {
	for _, s := range []string{"stream: OK", "stream: Eicar-Test-Signature FOUND", "INSTREAM size limit exceeded. ERROR", "stream: x ERROR", "stream:  FOUND", "PONG", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := checkAnswer(raw)
		if err != nil {
			return
		}
		res, err := parseStreamAnswer(a)
		if err != nil {
			if res != (Result{}) {
				t.Fatalf("error %v with a result %+v", err, res)
			}
			return
		}
		if res.Found != (res.Signature != "") || (res.Found && !validSignatureName(res.Signature)) {
			t.Fatalf("answer %q gave %+v", a, res)
		}
		if !res.Found && a != "stream: OK" {
			t.Fatalf("answer %q taken as clean", a)
		}
	})
}
