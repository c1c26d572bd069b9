package scanner

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	javaarchive "github.com/google/osv-scalibr/extractor/filesystem/language/java/archive"
)

// zipDirectoryRecord starts every record of a zip central directory.
// archive/zip builds a File for each record before anyone can look at them,
// so their number, not the archive's size, decides its memory.
var zipDirectoryRecord = []byte("PK\x01\x02")

// archiveBudget is what the rest of one Java archive tree may still use.
type archiveBudget struct {
	entries int
	bytes   int64
}

// checkArchive walks a Java archive and the archives nested in it the way
// scalibr's extractor will (same nested names, same members read) and
// refuses it, before the extractor runs, when the tree nests too deep, has
// too many entries, opens too many bytes, or holds an oversized manifest or
// pom: scalibr reads a nested archive whole, a MANIFEST.MF into a map with
// no bound, and revisits members that overlapping directory records share.
func (s *Scanner) checkArchive(ctx context.Context, p string, data []byte) error {
	b := &archiveBudget{entries: s.maxArchiveEntries, bytes: s.maxArchiveBytes - int64(len(data))}
	if b.bytes < 0 {
		return limitError("/"+p, "bytes opened from the archive and those nested in it", s.maxArchiveBytes, "WithMaxArchive")
	}
	return s.checkArchiveLevel(ctx, "/"+p, data, 1, b)
}

func (s *Scanner) checkArchiveLevel(ctx context.Context, name string, data []byte, depth int, b *archiveBudget) error {
	if depth > s.maxArchiveDepth {
		return limitError(archiveName(name), "archive nesting depth", int64(s.maxArchiveDepth), "WithMaxArchive")
	}
	// Counting the signature also counts records of stored nested archives
	// and any chance occurrence in data: an upper bound, found without
	// allocating.
	n := bytes.Count(data, zipDirectoryRecord)
	if n > b.entries {
		return limitError(archiveName(name), "entries of the archive and those nested in it", int64(s.maxArchiveEntries), "WithMaxArchive")
	}
	b.entries -= n
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil // not a zip: the extractor says so in its own words
	}
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		nested := javaarchive.IsArchive(f.Name)
		if !nested && !isArchiveMetadata(f.Name) {
			continue
		}
		inner := name + "!/" + f.Name
		size := f.UncompressedSize64
		if !nested && size > maxArchiveMetadataSize {
			return limitError(archiveName(inner), fmt.Sprintf("archive member of %d bytes", size), maxArchiveMetadataSize, "maxArchiveMetadataSize")
		}
		if size > uint64(b.bytes) {
			return limitError(archiveName(inner), "bytes opened from the archive and those nested in it", s.maxArchiveBytes, "WithMaxArchive")
		}
		b.bytes -= int64(size)
		if !nested {
			continue
		}
		innerData, ok := memberBytes(data, f)
		if !ok {
			continue // unreadable: the extractor logs it and goes on
		}
		if err := s.checkArchiveLevel(ctx, inner, innerData, depth+1, b); err != nil {
			return err
		}
	}
	return nil
}

// memberBytes returns a member's uncompressed bytes: a slice of data for a
// stored member (Spring Boot stores its nested jars), a copy otherwise.
// archive/zip fails a member that inflates past its declared size.
func memberBytes(data []byte, f *zip.File) ([]byte, bool) {
	if f.Method == zip.Store && f.CompressedSize64 == f.UncompressedSize64 {
		if off, err := f.DataOffset(); err == nil && off >= 0 && uint64(off)+f.CompressedSize64 <= uint64(len(data)) {
			return data[off : uint64(off)+f.CompressedSize64], true
		}
		return nil, false
	}
	rc, err := f.Open()
	if err != nil {
		return nil, false
	}
	defer rc.Close()
	buf := make([]byte, f.UncompressedSize64) // within the archive budget
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, false
	}
	return buf, true
}

// isArchiveMetadata names the members scalibr's archive extractor parses.
func isArchiveMetadata(name string) bool {
	base := path.Base(name)
	return base == "pom.properties" || base == "pom.xml" || strings.EqualFold(base, "manifest.mf")
}

// archiveName cuts a nested archive path short for an error message.
func archiveName(name string) string {
	const maxLen = 300
	if len(name) > maxLen {
		return name[:maxLen] + "…"
	}
	return name
}
