package cache

import "sync/atomic"

// A download reads the upstream's body in large chunks: on a fast link
// (loopback, a data centre) each read is a system call, a hash update and a
// spool write, and each blocking call hands the thread's P to another
// thread; 1 MiB reads instead of 256 KiB took a cold pull's CPU from about
// 1.8× to 1.4× the floor of sha256 + one write + one sendfile
// (BenchmarkColdPull256MiB). Clients decide how many downloads run at
// once, so the large buffers are a bounded pool: past maxLargeReadBuffers
// downloads at once, the others read with small buffers (slower, never
// waiting) and memory stays bounded.
const (
	largeReadBuffer     = 1 << 20
	smallReadBuffer     = 64 << 10
	maxLargeReadBuffers = 64
)

// readBuffers lends read buffers to downloads.
type readBuffers struct {
	free chan []byte // large buffers not lent now
	made atomic.Int32
}

func newReadBuffers() *readBuffers {
	return &readBuffers{free: make(chan []byte, maxLargeReadBuffers)}
}

// get returns a buffer and the function that gives it back.
func (p *readBuffers) get() (buf []byte, put func()) {
	select {
	case b := <-p.free:
		return b, func() { p.free <- b }
	default:
	}
	if p.made.Add(1) <= maxLargeReadBuffers {
		b := make([]byte, largeReadBuffer)
		return b, func() { p.free <- b }
	}
	p.made.Add(-1)
	return make([]byte, smallReadBuffer), func() {}
}
