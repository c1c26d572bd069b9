// Package clamd streams files to a ClamAV daemon (clamd) with INSTREAM and
// reads its verdict. clamd's answers are outside input: they are read with
// a bounded length and parsed strictly, and anything but "OK" or
// "<name> FOUND" is an error, never a clean file.
//
// Protocol (clamd(8), "INSTREAM"): the client sends "zINSTREAM\0", then
// chunks of <4-byte big-endian length><data>, then a zero-length chunk;
// clamd answers "stream: OK\0", "stream: <signature> FOUND\0" or
// "<message> ERROR\0" and closes the connection.
package clamd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// Defaults of Options.
const (
	DefaultConns        = 2
	DefaultDialTimeout  = 5 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	// DefaultReadTimeout bounds the wait for the verdict after the last
	// chunk: clamd scans the whole stream then (archives included).
	DefaultReadTimeout = 2 * time.Minute
	DefaultMaxFile     = 64 << 20
	DefaultChunkSize   = 64 << 10
)

// Bounds on what is read from clamd.
const (
	// maxAnswer bounds one answer: a signature name and a few words.
	maxAnswer = 1024
	// maxSignatureName bounds a FOUND name (ClamAV's are well under 200).
	maxSignatureName = 256
	// maxChunkSize is the largest chunk Options may ask for; clamd's
	// own reads are 64 KiB at most by default too.
	maxChunkSize = 1 << 20
)

// Errors a caller may want to tell apart (errors.Is).
var (
	// ErrTooLarge: the file is larger than Options.MaxFile and was not
	// sent; the caller skips it (and says so), it is not a clamd error.
	ErrTooLarge = errors.New("file larger than the clamd size limit")
	// ErrSizeLimit: clamd refused the stream as larger than its own
	// StreamMaxLength ("INSTREAM size limit exceeded").
	ErrSizeLimit = errors.New("clamd: INSTREAM size limit exceeded (raise StreamMaxLength to at least scan.clamd_max_file)")
	// ErrClamd: clamd answered an error, or something that is not an
	// answer.
	ErrClamd = errors.New("clamd error")
)

// Address is where clamd listens.
type Address struct {
	Network string // "unix" or "tcp"
	Addr    string // socket path, or host:port
}

func (a Address) String() string {
	if a.Network == "unix" {
		return "unix://" + a.Addr
	}
	return "tcp://" + a.Addr
}

// ParseAddress reads "unix:///run/clamav/clamd.ctl" or
// "tcp://127.0.0.1:3310". Any TCP host is allowed: it is the operator's
// daemon. config's scan.clamd check applies the same rules.
func ParseAddress(s string) (Address, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Address{}, fmt.Errorf("clamd address %q: %w", s, err)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Address{}, fmt.Errorf("clamd address %q: no credentials, query or fragment allowed", s)
	}
	switch u.Scheme {
	case "unix":
		if u.Host != "" || !path.IsAbs(u.Path) || path.Clean(u.Path) != u.Path {
			return Address{}, fmt.Errorf("clamd address %q: want unix:///absolute/path", s)
		}
		return Address{Network: "unix", Addr: u.Path}, nil
	case "tcp":
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" || (u.Path != "" && u.Path != "/") {
			return Address{}, fmt.Errorf("clamd address %q: want tcp://host:port", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Address{}, fmt.Errorf("clamd address %q: bad port %q", s, port)
		}
		return Address{Network: "tcp", Addr: u.Host}, nil
	}
	return Address{}, fmt.Errorf("clamd address %q: scheme must be unix or tcp", s)
}

// Options tune a Client; zero fields take the defaults.
type Options struct {
	// Conns bounds the connections open at once (one per scan worker):
	// a scan that wants another waits for a free one.
	Conns        int
	DialTimeout  time.Duration
	WriteTimeout time.Duration // per chunk
	ReadTimeout  time.Duration // for the answer, after the last chunk
	MaxFile      int64         // scan.clamd_max_file: larger files are not sent (ErrTooLarge)
	ChunkSize    int           // bytes per INSTREAM chunk, at most 1 MiB
}

// Client talks to one clamd. It is safe for concurrent use; at most
// Options.Conns connections are open at once.
type Client struct {
	addr  Address
	opts  Options
	slots chan struct{}
}

// New makes a client for the clamd at addr (see ParseAddress). It does not
// connect: Ping checks that clamd answers.
func New(addr string, opts Options) (*Client, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	if opts.Conns <= 0 {
		opts.Conns = DefaultConns
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.MaxFile <= 0 {
		opts.MaxFile = DefaultMaxFile
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ChunkSize > maxChunkSize {
		return nil, fmt.Errorf("clamd chunk size %d: at most %d", opts.ChunkSize, maxChunkSize)
	}
	return &Client{addr: a, opts: opts, slots: make(chan struct{}, opts.Conns)}, nil
}

// Address is where the client connects.
func (c *Client) Address() Address { return c.addr }

// Result is clamd's verdict on one stream.
type Result struct {
	Found     bool
	Signature string // clamd's signature name when Found
	SHA256    string // hex sha256 of the bytes sent, to name the file in a finding
}

// Finding is the malware finding for a FOUND result: path is the file's
// path in the image, layer the digest of the layer that holds it.
func (r Result) Finding(path, layer string) vulndb.Finding {
	f := vulndb.MalwareFileFinding(r.Signature, path, layer, r.SHA256)
	f.Summary = "found by clamd"
	return f
}

// Ping checks that clamd answers PING with PONG.
func (c *Client) Ping(ctx context.Context) error {
	conn, release, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := c.write(conn, []byte("zPING\x00")); err != nil {
		return fmt.Errorf("clamd %s: send PING: %w", c.addr, err)
	}
	answer, err := c.readAnswer(conn)
	if err != nil {
		return fmt.Errorf("clamd %s: PING: %w", c.addr, err)
	}
	if answer != "PONG" {
		return fmt.Errorf("clamd %s: PING answered %q: %w", c.addr, answer, ErrClamd)
	}
	return nil
}

// Version asks clamd for its version and its database's
// ("ClamAV 1.4.6/27480/Thu Dec  3 08:00:00 2026"): results cached per
// layer must be keyed by it, so that a signature update reaches them.
func (c *Client) Version(ctx context.Context) (string, error) {
	conn, release, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	if err := c.write(conn, []byte("zVERSION\x00")); err != nil {
		return "", fmt.Errorf("clamd %s: send VERSION: %w", c.addr, err)
	}
	answer, err := c.readAnswer(conn)
	if err != nil {
		return "", fmt.Errorf("clamd %s: VERSION: %w", c.addr, err)
	}
	if len(answer) < len("ClamAV ") || answer[:len("ClamAV ")] != "ClamAV " {
		return "", fmt.Errorf("clamd %s: VERSION answered %q: %w", c.addr, answer, ErrClamd)
	}
	return answer, nil
}

// Scan streams size bytes of r to clamd and returns its verdict. A file
// larger than Options.MaxFile is not sent: ErrTooLarge. r yielding more
// or fewer bytes than size is an error (the tar header lied). clamd
// unreachable, timing out, answering ERROR or garbage is an error: the
// caller must not take it as a clean file.
func (c *Client) Scan(ctx context.Context, r io.Reader, size int64) (Result, error) {
	if size < 0 {
		return Result{}, fmt.Errorf("clamd scan: negative size %d", size)
	}
	if size > c.opts.MaxFile {
		return Result{}, fmt.Errorf("clamd scan: %d bytes: %w (%d)", size, ErrTooLarge, c.opts.MaxFile)
	}
	conn, release, err := c.dial(ctx)
	if err != nil {
		return Result{}, err
	}
	defer release()
	res, err := c.instream(conn, r, size)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("clamd %s: INSTREAM: %w", c.addr, ctx.Err())
		}
		return Result{}, fmt.Errorf("clamd %s: INSTREAM: %w", c.addr, err)
	}
	return res, nil
}

func (c *Client) instream(conn net.Conn, r io.Reader, size int64) (Result, error) {
	if err := c.write(conn, []byte("zINSTREAM\x00")); err != nil {
		return Result{}, c.failedWrite(conn, err)
	}
	buf := make([]byte, 4+c.opts.ChunkSize)
	sum := sha256.New()
	remaining := size
	for remaining > 0 {
		n := int(min(remaining, int64(c.opts.ChunkSize)))
		if _, err := io.ReadFull(r, buf[4:4+n]); err != nil {
			return Result{}, fmt.Errorf("read file (%d of %d bytes left): %w", remaining, size, err)
		}
		sum.Write(buf[4 : 4+n])
		binary.BigEndian.PutUint32(buf[:4], uint32(n))
		if err := c.write(conn, buf[:4+n]); err != nil {
			return Result{}, c.failedWrite(conn, err)
		}
		remaining -= int64(n)
	}
	// More bytes than the header said: the reader is not what it claims.
	var extra [1]byte
	if n, _ := io.ReadFull(r, extra[:]); n > 0 {
		return Result{}, fmt.Errorf("read file: more than the %d bytes announced", size)
	}
	if err := c.write(conn, []byte{0, 0, 0, 0}); err != nil {
		return Result{}, c.failedWrite(conn, err)
	}
	answer, err := c.readAnswer(conn)
	if err != nil {
		return Result{}, err
	}
	res, err := parseStreamAnswer(answer)
	if err != nil {
		return Result{}, err
	}
	res.SHA256 = hex.EncodeToString(sum.Sum(nil))
	return res, nil
}

// failedWrite explains a write clamd cut short: it closes the connection
// after answering an error (a stream over StreamMaxLength), so its answer
// is read if there is one.
func (c *Client) failedWrite(conn net.Conn, werr error) error {
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	if answer, err := readAnswerFrom(conn); err == nil {
		if _, perr := parseStreamAnswer(answer); perr != nil {
			return perr
		}
	}
	return fmt.Errorf("send: %w", werr)
}

// dial takes a connection slot and connects; release closes the
// connection and frees the slot.
func (c *Client) dial(ctx context.Context) (net.Conn, func(), error) {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("clamd %s: wait for a connection: %w", c.addr, ctx.Err())
	}
	d := net.Dialer{Timeout: c.opts.DialTimeout}
	conn, err := d.DialContext(ctx, c.addr.Network, c.addr.Addr)
	if err != nil {
		<-c.slots
		return nil, nil, fmt.Errorf("clamd %s: connect: %w", c.addr, err)
	}
	// A cancelled scan ends the exchange at once rather than at the next
	// deadline.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	return conn, func() {
		stop()
		conn.Close()
		<-c.slots
	}, nil
}

func (c *Client) write(conn net.Conn, b []byte) error {
	if err := conn.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout)); err != nil {
		return err
	}
	_, err := conn.Write(b)
	return err
}

func (c *Client) readAnswer(conn net.Conn) (string, error) {
	if err := conn.SetReadDeadline(time.Now().Add(c.opts.ReadTimeout)); err != nil {
		return "", err
	}
	return readAnswerFrom(conn)
}

// readAnswerFrom reads one answer: up to a NUL (the "z" commands' end) or
// the end of the connection, at most maxAnswer bytes.
func readAnswerFrom(conn net.Conn) (string, error) {
	buf := make([]byte, 0, 128)
	var b [256]byte
	for {
		n, err := conn.Read(b[:])
		buf = append(buf, b[:n]...)
		if i := bytes.IndexByte(buf, 0); i >= 0 {
			return checkAnswer(buf[:i])
		}
		if len(buf) > maxAnswer {
			return "", fmt.Errorf("answer longer than %d bytes: %w", maxAnswer, ErrClamd)
		}
		if errors.Is(err, io.EOF) {
			if len(buf) == 0 {
				return "", fmt.Errorf("connection closed without an answer: %w", ErrClamd)
			}
			return checkAnswer(buf)
		}
		if err != nil {
			return "", fmt.Errorf("read answer: %w", err)
		}
	}
}

// checkAnswer refuses answers with bytes that are not printable ASCII: they
// would end up in logs and findings.
func checkAnswer(b []byte) (string, error) {
	b = bytes.TrimRight(b, "\n")
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return "", fmt.Errorf("answer %q is not printable text: %w", b[:min(len(b), 64)], ErrClamd)
		}
	}
	return string(b), nil
}

// parseStreamAnswer reads INSTREAM's answer strictly.
func parseStreamAnswer(a string) (Result, error) {
	const prefix = "stream: "
	switch {
	case a == prefix+"OK":
		return Result{}, nil
	case a == "INSTREAM size limit exceeded. ERROR":
		return Result{}, ErrSizeLimit
	case len(a) > len(" ERROR") && a[len(a)-len(" ERROR"):] == " ERROR":
		return Result{}, fmt.Errorf("clamd answered %q: %w", a, ErrClamd)
	case len(a) > len(prefix)+len(" FOUND") && a[:len(prefix)] == prefix && a[len(a)-len(" FOUND"):] == " FOUND":
		name := a[len(prefix) : len(a)-len(" FOUND")]
		if !validSignatureName(name) {
			return Result{}, fmt.Errorf("clamd answered FOUND with a malformed name %q: %w", name, ErrClamd)
		}
		return Result{Found: true, Signature: name}, nil
	}
	return Result{}, fmt.Errorf("clamd answered %q, not OK, FOUND or ERROR: %w", a, ErrClamd)
}

// validSignatureName: what ClamAV names look like ("Win.Test.EICAR_HDB-1",
// with ExtendedDetectionInfo "Name(hash:size)"): no spaces, bounded.
func validSignatureName(s string) bool {
	if s == "" || len(s) > maxSignatureName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
