package store

import (
	"encoding/binary"
	"fmt"
	"io"
)

// walkBoltPages reads the page tree meta describes with plain reads and
// checks what bbolt would otherwise trust blindly through its memory map:
// every page number inside the pages in use, each page referenced once (so
// no loop), page types as expected, elements inside their page, a bounded
// depth, and a freelist that names only pages in use and none that the
// tree reaches. Its work is bounded by the file: each page is read once.
func walkBoltPages(f io.ReaderAt, meta boltMeta) error {
	w := &boltWalker{f: f, ps: int64(meta.pageSize), hwm: meta.pgid, seen: map[uint64]bool{0: true, 1: true}}
	if err := w.page(meta.root, 0); err != nil {
		return err
	}
	if meta.freelist != boltNoFreelist {
		return w.freelist(meta.freelist)
	}
	return nil
}

const (
	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltFreelistPage = 0x10
	boltBucketLeaf   = 0x01 // leaf element flag: the value is a bucket
	boltElemSize     = 16   // branch and leaf element headers
	boltInBucketSize = 16   // root pgid, sequence
	maxBoltDepth     = 64   // a B+tree of 2^64 keys is far shallower
)

type boltWalker struct {
	f    io.ReaderAt
	ps   int64
	hwm  uint64
	seen map[uint64]bool
}

// read returns page id with its overflow pages, after checking its header.
func (w *boltWalker) read(id uint64, wantFlags uint16) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page %d referenced, outside the %d pages in use", id, w.hwm)
	}
	// One read for the usual one-page page; overflow pages follow.
	buf := make([]byte, w.ps)
	if _, err := w.f.ReadAt(buf, int64(id)*w.ps); err != nil {
		return nil, fmt.Errorf("read page %d: %w", id, err)
	}
	e := binary.NativeEndian
	if got := e.Uint64(buf); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	if flags := e.Uint16(buf[8:]); flags&wantFlags == 0 {
		return nil, fmt.Errorf("page %d has type %#x, want %#x", id, flags, wantFlags)
	}
	overflow := uint64(e.Uint32(buf[12:]))
	if id+overflow >= w.hwm {
		return nil, fmt.Errorf("page %d runs %d pages on, past the %d pages in use", id, overflow, w.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if w.seen[p] {
			return nil, fmt.Errorf("page %d referenced twice", p)
		}
		w.seen[p] = true
	}
	if overflow > 0 {
		whole := make([]byte, int64(overflow+1)*w.ps)
		copy(whole, buf)
		if _, err := w.f.ReadAt(whole[w.ps:], int64(id+1)*w.ps); err != nil {
			return nil, fmt.Errorf("read page %d: %w", id, err)
		}
		buf = whole
	}
	return buf, nil
}

func (w *boltWalker) page(id uint64, depth int) error {
	if depth > maxBoltDepth {
		return fmt.Errorf("page tree deeper than %d at page %d", maxBoltDepth, id)
	}
	buf, err := w.read(id, boltBranchPage|boltLeafPage)
	if err != nil {
		return err
	}
	return w.elements(buf, id, depth)
}

// elements checks the elements of a branch or leaf page held in buf (a
// page in the file, or a bucket's inline page) and walks what they point to.
func (w *boltWalker) elements(buf []byte, id uint64, depth int) error {
	if len(buf) < boltPageHeader {
		return fmt.Errorf("page %d: shorter than its header", id)
	}
	e := binary.NativeEndian
	flags, count := e.Uint16(buf[8:]), int(e.Uint16(buf[10:]))
	if boltPageHeader+count*boltElemSize > len(buf) {
		return fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	for i := range count {
		at := boltPageHeader + i*boltElemSize
		el := buf[at : at+boltElemSize]
		switch {
		case flags&boltBranchPage != 0:
			pos, ksize := int64(e.Uint32(el)), int64(e.Uint32(el[4:]))
			if int64(at)+pos+ksize > int64(len(buf)) {
				return fmt.Errorf("page %d: branch element %d outside the page", id, i)
			}
			if err := w.page(e.Uint64(el[8:]), depth+1); err != nil {
				return err
			}
		case flags&boltLeafPage != 0:
			eflags, pos := e.Uint32(el), int64(e.Uint32(el[4:]))
			ksize, vsize := int64(e.Uint32(el[8:])), int64(e.Uint32(el[12:]))
			start := int64(at) + pos + ksize
			if start+vsize > int64(len(buf)) {
				return fmt.Errorf("page %d: leaf element %d outside the page", id, i)
			}
			if eflags&boltBucketLeaf == 0 {
				continue
			}
			value := buf[start : start+vsize]
			if len(value) < boltInBucketSize {
				return fmt.Errorf("page %d: bucket element %d too short", id, i)
			}
			if root := e.Uint64(value); root != 0 {
				if err := w.page(root, depth+1); err != nil {
					return err
				}
			} else if err := w.inline(value[boltInBucketSize:], id, depth+1); err != nil {
				return err
			}
		default:
			return fmt.Errorf("page %d has type %#x, want a branch or leaf", id, flags)
		}
	}
	return nil
}

// inline checks a small bucket stored in its parent's value: a leaf page.
func (w *boltWalker) inline(buf []byte, parent uint64, depth int) error {
	if depth > maxBoltDepth {
		return fmt.Errorf("page tree deeper than %d under page %d", maxBoltDepth, parent)
	}
	if len(buf) < boltPageHeader || binary.NativeEndian.Uint16(buf[8:])&boltLeafPage == 0 {
		return fmt.Errorf("page %d: inline bucket is not a leaf page", parent)
	}
	return w.elements(buf, parent, depth)
}

// freelist checks the free page list: pages in use, none reachable.
func (w *boltWalker) freelist(id uint64) error {
	buf, err := w.read(id, boltFreelistPage)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	e := binary.NativeEndian
	count, at := uint64(e.Uint16(buf[10:])), uint64(boltPageHeader)
	if count == 0xFFFF { // the real count is the first element
		if len(buf) < boltPageHeader+8 {
			return fmt.Errorf("freelist page %d: no count", id)
		}
		count, at = e.Uint64(buf[boltPageHeader:]), at+8
	}
	if count > (uint64(len(buf))-at)/8 {
		return fmt.Errorf("freelist page %d: %d entries do not fit", id, count)
	}
	free := make(map[uint64]bool, count)
	for i := range count {
		p := e.Uint64(buf[at+i*8:])
		switch {
		case p < 2 || p >= w.hwm:
			return fmt.Errorf("freelist names page %d, outside the %d pages in use", p, w.hwm)
		case free[p]:
			return fmt.Errorf("freelist names page %d twice", p)
		case w.seen[p]:
			return fmt.Errorf("page %d is both free and in use", p)
		}
		free[p] = true
	}
	return nil
}
