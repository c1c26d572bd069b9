package vex

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Bounds on what a directory of VEX files can make a reload read.
const (
	MaxFiles      = 1_000
	MaxTotalBytes = 64 << 20
	maxWalkDepth  = 8
)

// Loaded is the documents read from files, with a hash of their content
// so a policy version can cover them.
type Loaded struct {
	Sources []Source
	// Hash is "sha256:…" over every file's path and content in the order
	// read: any change to a document changes it.
	Hash string
}

// LoadFiles reads each named file, and every *.json file under each named
// directory (bounded in depth, count and bytes), relative to base when not
// absolute. Any unreadable or invalid document is an error naming it: a
// policy that names VEX means it to apply.
func LoadFiles(base string, paths []string, origin string) (Loaded, error) {
	var files []string
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return Loaded{}, fmt.Errorf("VEX %s: %w", p, err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		found, err := walkDir(p)
		if err != nil {
			return Loaded{}, err
		}
		files = append(files, found...)
		if len(files) > MaxFiles {
			return Loaded{}, fmt.Errorf("VEX: more than %d files", MaxFiles)
		}
	}
	if len(files) > MaxFiles {
		return Loaded{}, fmt.Errorf("VEX: more than %d files", MaxFiles)
	}
	h := sha256.New()
	var out Loaded
	var total int64
	for _, f := range files {
		data, err := readBounded(f, MaxDocumentBytes)
		if err != nil {
			return Loaded{}, fmt.Errorf("read VEX %s: %w", f, err)
		}
		if total += int64(len(data)); total > MaxTotalBytes {
			return Loaded{}, fmt.Errorf("VEX files: more than %d bytes in all", MaxTotalBytes)
		}
		doc, err := Parse(data)
		if err != nil {
			return Loaded{}, fmt.Errorf("VEX %s: %w", f, err)
		}
		fmt.Fprintf(h, "%d:%s\n%d:", len(f), f, len(data))
		h.Write(data)
		out.Sources = append(out.Sources, Source{Doc: doc, Origin: origin + filepath.Base(f)})
	}
	out.Hash = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return out, nil
}

// walkDir lists the *.json files under dir in a stable order, not
// following symlinked directories.
func walkDir(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			if rel != "." && strings.Count(rel, string(filepath.Separator))+1 > maxWalkDepth {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasSuffix(strings.ToLower(d.Name()), ".json") {
			if len(files) >= MaxFiles {
				return fmt.Errorf("more than %d files", MaxFiles)
			}
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("VEX directory %s: %w", dir, err)
	}
	slices.Sort(files)
	return files, nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", errTooLarge, limit)
	}
	return data, nil
}
