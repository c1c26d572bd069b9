package main

import (
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// sendChunk is how much one write or sendfile call may send before the
// write deadline is pushed forward again. A client must take at least this
// much per write_idle_timeout to keep its transfer (about 4 KB/s at the
// 2 minute default): slow links pass, a reader that stopped does not.
const sendChunk = 512 << 10

// serverListener caps concurrent connections at maxConns (a client cannot
// use up file descriptors; past the cap connections wait in the kernel's
// backlog until one closes) and drops a connection whose writes make no
// progress for writeIdle. It does the limiting itself rather than with
// x/net/netutil.LimitListener, whose connection wrapper hides the
// *net.TCPConn's ReadFrom, and with it sendfile for cached blobs.
func serverListener(ln net.Listener, maxConns int, writeIdle time.Duration) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, maxConns), closed: make(chan struct{}), idle: writeIdle}
}

type limitListener struct {
	net.Listener
	slots     chan struct{} // one token per open connection
	closed    chan struct{}
	closeOnce sync.Once
	idle      time.Duration
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &progressConn{Conn: c, idle: l.idle, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// progressConn sets a write deadline of idle from now before every chunk it
// sends. A whole-response deadline (http.Server.WriteTimeout) would cut long
// blob transfers; this one only fires when the client stops reading.
type progressConn struct {
	net.Conn
	idle      time.Duration
	release   func() // frees the connection's slot, once
	closeOnce sync.Once
}

func (c *progressConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.release)
	return err
}

func (c *progressConn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		end := min(len(p), written+sendChunk)
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.idle)); err != nil {
			return written, err
		}
		n, err := c.Conn.Write(p[written:end])
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// ReadFrom keeps net/http's sendfile path for cached blobs: each chunk of a
// file is one sendfile call on the underlying connection, with the deadline
// pushed forward in between. An *io.LimitedReader (a Range) is unwrapped, as
// the net package only recognises a file directly inside one.
func (c *progressConn) ReadFrom(r io.Reader) (int64, error) {
	src, limit := r, int64(-1)
	lr, limited := r.(*io.LimitedReader)
	if limited {
		src, limit = lr.R, lr.N
	}
	rf, ok := c.Conn.(io.ReaderFrom)
	if _, file := src.(syscall.Conn); !ok || !file {
		// Not a file (a download in flight): copy through Write, which sets
		// the deadline right before each write, not before a read that
		// may wait on the upstream.
		return io.Copy(writerOnly{c}, r)
	}
	var total int64
	for {
		n := int64(sendChunk)
		if limited {
			n = min(n, limit-total)
			if n <= 0 {
				return total, nil
			}
		}
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.idle)); err != nil {
			return total, err
		}
		m, err := rf.ReadFrom(&io.LimitedReader{R: src, N: n})
		total += m
		if limited {
			lr.N = limit - total
		}
		if err != nil || m < n { // m < n without an error: src is at its end
			return total, err
		}
	}
}

// writerOnly hides ReadFrom so io.Copy does not call back into it.
type writerOnly struct{ io.Writer }
