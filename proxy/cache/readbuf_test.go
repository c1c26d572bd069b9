package cache

import "testing"

// Large read buffers are lent to at most maxLargeReadBuffers downloads at
// once; the others get small ones at once (never waiting), and a buffer
// given back is lent again rather than a new one made.
func TestReadBuffersAreBounded(t *testing.T) {
	p := newReadBuffers()
	var puts []func()
	for i := range maxLargeReadBuffers {
		b, put := p.get()
		if len(b) != largeReadBuffer {
			t.Fatalf("download %d got %d bytes, want a large buffer", i, len(b))
		}
		puts = append(puts, put)
	}
	extra, putExtra := p.get()
	if len(extra) != smallReadBuffer {
		t.Fatalf("download past the bound got %d bytes, want %d", len(extra), smallReadBuffer)
	}
	putExtra()
	first, _ := p.get() // still none free: small again
	if len(first) != smallReadBuffer {
		t.Fatalf("got %d bytes with every large buffer lent", len(first))
	}
	puts[0]()
	again, putAgain := p.get()
	if len(again) != largeReadBuffer {
		t.Fatalf("got %d bytes after one large buffer came back", len(again))
	}
	putAgain()
	for _, put := range puts[1:] {
		put()
	}
	if n := p.made.Load(); n != maxLargeReadBuffers {
		t.Fatalf("%d large buffers made, want %d", n, maxLargeReadBuffers)
	}
	if n := len(p.free); n != maxLargeReadBuffers {
		t.Fatalf("%d large buffers free after all came back, want %d", n, maxLargeReadBuffers)
	}
}
