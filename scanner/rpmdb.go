package scanner

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/google/osv-scalibr/extractor"
	"github.com/google/osv-scalibr/extractor/filesystem"
	rpmmeta "github.com/google/osv-scalibr/extractor/filesystem/os/rpm/metadata"
	"github.com/google/osv-scalibr/purl"
)

// The rpm database is read by hand. osv-scalibr's rpm extractor (through
// go-rpmdb) needs a file path: for an image it copies the database to a
// temporary file on the host, which we never do, and its sqlite driver is
// the size of a C library transpiled to Go. The formats are small enough to
// read from memory: a Berkeley DB hash file (RHEL/CentOS 7 and 8) or an
// SQLite file (Fedora 33+, RHEL 9) whose rows hold rpm header blobs.
// NDB (Packages.db, SUSE) is not read yet.

var rpmDBDirs = map[string]bool{"var/lib/rpm": true, "usr/lib/sysimage/rpm": true, "usr/share/rpm": true}

func wantsRPMDB(p string, _ fs.FileInfo) bool {
	dir, base := path.Split(p)
	return rpmDBDirs[path.Clean(dir)] && (base == "Packages" || base == "rpmdb.sqlite")
}

var errNotRPMDB = errors.New("not an rpm database")

// extractRPMDB lists the packages of an rpm database held in memory.
func extractRPMDB(ctx context.Context, in *filesystem.ScanInput) ([]*extractor.Package, error) {
	data, err := inputBytes(in)
	if err != nil {
		return nil, err
	}
	var blobs [][]byte
	switch {
	case bytes.HasPrefix(data, []byte(sqliteMagic)):
		blobs, err = sqliteTableBlobs(ctx, data, "Packages", "blob")
	default:
		blobs, err = bdbHashValues(ctx, data)
	}
	if err != nil {
		return nil, err
	}
	var pkgs []*extractor.Package
	for _, b := range blobs {
		h, err := parseRPMHeader(b)
		if err != nil {
			return pkgs, fmt.Errorf("rpm header: %w", err)
		}
		// gpg-pubkey entries are imported signing keys, not software.
		if h.name == "" || h.version == "" || h.name == "gpg-pubkey" {
			continue
		}
		pkgs = append(pkgs, &extractor.Package{
			Name:     h.name,
			Version:  h.version + "-" + h.release,
			PURLType: purl.TypeRPM,
			Location: extractor.LocationFromPath(in.Path),
			Metadata: &rpmmeta.Metadata{
				PackageName:  h.name,
				SourceRPM:    h.sourceRPM,
				Epoch:        h.epoch,
				Vendor:       h.vendor,
				Architecture: h.arch,
			},
			Licenses: []string{h.license},
		})
	}
	return pkgs, nil
}

// inputBytes gives the whole file: the walker's buffer itself when the
// walker made the input (a database can be tens of MiB; nothing here keeps
// or changes it), else a copy of what the reader holds.
func inputBytes(in *filesystem.ScanInput) ([]byte, error) {
	if m, ok := in.Reader.(memReader); ok {
		return m.data, nil
	}
	return io.ReadAll(in.Reader)
}

// rpm header tags and types, from rpm's rpmtag.h.
const (
	rpmTagName      = 1000
	rpmTagVersion   = 1001
	rpmTagRelease   = 1002
	rpmTagEpoch     = 1003
	rpmTagVendor    = 1011
	rpmTagLicense   = 1014
	rpmTagArch      = 1022
	rpmTagSourceRPM = 1044

	rpmTypeInt32       = 4
	rpmTypeString      = 6
	rpmTypeStringArray = 8
	rpmTypeI18NString  = 9
)

type rpmHeader struct {
	name, version, release, arch, sourceRPM, license, vendor string
	epoch                                                    int
}

// parseRPMHeader reads the fields we need from a header blob as stored in
// the database: big-endian entry count and data length, the index entries
// (tag, type, offset, count), then the data store.
// https://rpm-software-management.github.io/rpm/manual/format_v4.html
func parseRPMHeader(b []byte) (rpmHeader, error) {
	var h rpmHeader
	if len(b) < 8 {
		return h, errors.New("header too short")
	}
	il := binary.BigEndian.Uint32(b[0:4])
	dl := binary.BigEndian.Uint32(b[4:8])
	// rpm itself refuses more than 0xffff entries and 256 MiB of data.
	if il == 0 || il > 0xffff || dl > 256<<20 || uint64(8)+uint64(il)*16+uint64(dl) > uint64(len(b)) {
		return h, fmt.Errorf("bad header sizes (%d entries, %d bytes of data, blob %d bytes)", il, dl, len(b))
	}
	index := b[8 : 8+il*16]
	store := b[8+il*16 : 8+il*16+dl]
	for i := uint32(0); i < il; i++ {
		e := index[i*16 : i*16+16]
		tag := binary.BigEndian.Uint32(e[0:4])
		typ := binary.BigEndian.Uint32(e[4:8])
		off := binary.BigEndian.Uint32(e[8:12])
		if off >= uint32(len(store)) {
			continue // region trailers and malformed entries
		}
		if tag == rpmTagEpoch {
			if typ == rpmTypeInt32 && int(off)+4 <= len(store) {
				h.epoch = int(binary.BigEndian.Uint32(store[off : off+4]))
			}
			continue
		}
		field := h.stringField(tag)
		if field == nil || typ != rpmTypeString && typ != rpmTypeStringArray && typ != rpmTypeI18NString {
			continue
		}
		*field = cString(store[off:])
	}
	return h, nil
}

// stringField is where a string tag goes, nil for tags we do not read: one
// list of the tags, where a switch to pick them and another to store them
// would repeat it.
func (h *rpmHeader) stringField(tag uint32) *string {
	switch tag {
	case rpmTagName:
		return &h.name
	case rpmTagVersion:
		return &h.version
	case rpmTagRelease:
		return &h.release
	case rpmTagArch:
		return &h.arch
	case rpmTagSourceRPM:
		return &h.sourceRPM
	case rpmTagLicense:
		return &h.license
	case rpmTagVendor:
		return &h.vendor
	}
	return nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Berkeley DB hash format, from libdb's dbinc/db_page.h.
const (
	bdbHashMagic     = 0x061561
	bdbPageHash      = 13 // P_HASH
	bdbPageHashOld   = 2  // P_HASH_UNSORTED, before 4.6 (CentOS 5)
	bdbPageOverflow  = 7  // P_OVERFLOW
	bdbPageHeader    = 26
	bdbItemOffpage   = 3 // H_OFFPAGE
	bdbOffpageLength = 12
)

// bdbHashValues returns every value of a Berkeley DB hash database whose
// data lives on overflow pages, which is where rpm keeps each header (the
// keys are package numbers). The file is walked page by page, as rpm's
// own read-only reader does.
func bdbHashValues(ctx context.Context, db []byte) ([][]byte, error) {
	if len(db) < 512 {
		return nil, errNotRPMDB
	}
	order := binary.ByteOrder(binary.LittleEndian)
	switch {
	case binary.LittleEndian.Uint32(db[12:16]) == bdbHashMagic:
	case binary.BigEndian.Uint32(db[12:16]) == bdbHashMagic:
		order = binary.BigEndian
	default:
		return nil, errNotRPMDB
	}
	pageSize := int(order.Uint32(db[20:24]))
	if pageSize < 512 || pageSize > 64<<10 || pageSize&(pageSize-1) != 0 {
		return nil, fmt.Errorf("bdb: bad page size %d", pageSize)
	}
	if db[24] != 0 {
		return nil, errors.New("bdb: encrypted database")
	}
	pages := len(db) / pageSize
	if last := int(order.Uint32(db[32:36])); last+1 < pages {
		pages = last + 1
	}
	var values [][]byte
	// A sound file stores each value once, on its own overflow pages; the
	// budget stops a hostile one from pointing every entry at one long chain.
	budget := len(db)
	for pg := 1; pg < pages; pg++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		page := db[pg*pageSize : (pg+1)*pageSize]
		if t := page[25]; t != bdbPageHash && t != bdbPageHashOld {
			continue
		}
		entries := int(order.Uint16(page[20:22]))
		if bdbPageHeader+2*entries > pageSize {
			return nil, fmt.Errorf("bdb: page %d: %d entries do not fit", pg, entries)
		}
		// Entries alternate key, value; values are at odd positions.
		for i := 1; i < entries; i += 2 {
			off := int(order.Uint16(page[bdbPageHeader+2*i:]))
			if off+bdbOffpageLength > pageSize || page[off] != bdbItemOffpage {
				continue
			}
			first := int(order.Uint32(page[off+4 : off+8]))
			length := int(order.Uint32(page[off+8 : off+12]))
			if length > budget {
				return nil, fmt.Errorf("bdb: page %d item %d: %d bytes exceed the file", pg, i, length)
			}
			budget -= length
			v, err := bdbOverflow(db, pageSize, pages, first, length, order)
			if err != nil {
				return nil, fmt.Errorf("bdb: page %d item %d: %w", pg, i, err)
			}
			values = append(values, v)
		}
	}
	return values, nil
}

// bdbOverflow follows a chain of overflow pages. For these pages the
// header's free-space field holds the number of data bytes on the page.
func bdbOverflow(db []byte, pageSize, pages, pg, length int, order binary.ByteOrder) ([]byte, error) {
	if length < 0 || length > len(db) {
		return nil, fmt.Errorf("item length %d", length)
	}
	out := make([]byte, 0, length)
	for hops := 0; pg != 0; hops++ {
		if pg < 0 || pg >= pages || hops >= pages {
			return nil, fmt.Errorf("overflow chain leaves the file at page %d", pg)
		}
		page := db[pg*pageSize : (pg+1)*pageSize]
		if page[25] != bdbPageOverflow {
			return nil, fmt.Errorf("page %d is not an overflow page", pg)
		}
		n := int(order.Uint16(page[22:24]))
		if bdbPageHeader+n > pageSize || len(out)+n > length {
			return nil, fmt.Errorf("overflow page %d holds %d bytes", pg, n)
		}
		out = append(out, page[bdbPageHeader:bdbPageHeader+n]...)
		pg = int(order.Uint32(page[16:20]))
	}
	if len(out) != length {
		return nil, fmt.Errorf("overflow chain has %d of %d bytes", len(out), length)
	}
	return out, nil
}
