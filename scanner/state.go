package scanner

import (
	"cmp"
	"path"
	"slices"
	"strings"
)

// fsState is what the scan remembers of the merged image filesystem: only
// the paths that matter (package databases and binaries with what was found
// in them, OS identification files, and the symlinks needed to read those),
// each with the layer that last wrote it. A later layer's entry for the same
// path replaces the earlier one; whiteouts delete paths and subtrees.
type fsState struct {
	entries map[string]*pathEntry
	// dirs holds every directory above a path ever stored, so a non-directory
	// entry that replaces one of them can drop what lies beneath.
	dirs map[string]struct{}
	// osCandidates are the remembered OS identification files that are not
	// at one of the osFiles paths: possible symlink targets, kept until the
	// end of their layer shows whether a link reaches them (pruneOSFiles).
	osCandidates map[string]struct{}
	// packageCount and packageBytes describe the packages remembered now,
	// for the inventory bounds; entries deleted later no longer count.
	packageCount int
	packageBytes int64
	// fileFindings are the findings of the inspectors in the files of the
	// layers read so far, in walk order; whiteouts do not remove them.
	fileFindings     []fileFinding
	fileFindingsFull bool     // maxFileFindings reached: no more are looked for
	notes            []string // for Inventory.Notes
}

// pathEntry is one remembered path.
type pathEntry struct {
	layer   int     // index of the layer that wrote this path
	pkgs    []found // packages extracted from the file
	content []byte  // OS identification files only
	link    string  // symlink target, if this is a symlink
}

// found is one package extracted from a file, before the OS is known.
type found struct {
	pkg   Package
	layer int     // layer that introduced it (may be older than the file)
	os    *osInfo // OS packages only
}

// osInfo keeps what an OS package's purl needs once the OS is known.
type osInfo struct {
	arch  string
	epoch int
}

// layerChanges are the deletions a layer makes to the layers below it,
// applied once the layer has been read.
type layerChanges struct {
	gone   map[string]struct{} // whiteouts and replaced directories: the path and all beneath it
	opaque map[string]struct{} // opaque directories: everything beneath, not the directory itself
}

func newLayerChanges() *layerChanges {
	return &layerChanges{gone: map[string]struct{}{}, opaque: map[string]struct{}{}}
}

func newFSState() *fsState {
	return &fsState{entries: map[string]*pathEntry{}, dirs: map[string]struct{}{}, osCandidates: map[string]struct{}{}}
}

// remove forgets the entry at p, if any, and what it counted for.
func (st *fsState) remove(p string) {
	e, ok := st.entries[p]
	if !ok {
		return
	}
	delete(st.entries, p)
	delete(st.osCandidates, p)
	st.packageCount -= len(e.pkgs)
	for _, f := range e.pkgs {
		st.packageBytes -= f.size()
	}
}

// size estimates what a package costs in the stored inventory: its
// strings; the rest of a record is small and fixed.
func (f found) size() int64 {
	p := f.pkg
	return int64(len(p.Name) + len(p.Version) + len(p.SourceName) + len(p.SourceVersion) + len(p.PURL) + len(p.Location) + len(p.Ecosystem) + len(p.Type))
}

// replace records that a non-directory entry was written at p, dropping
// whatever was remembered there. If p was a directory, everything beneath it
// from lower layers goes too, at the end of the layer. It returns the old
// entry so packages that stay the same keep their original layer.
func (st *fsState) replace(p string, layer int, ch *layerChanges) *pathEntry {
	old := st.entries[p]
	st.remove(p)
	if _, ok := st.dirs[p]; ok {
		ch.gone[p] = struct{}{}
	}
	if old != nil && old.layer == layer {
		return nil // same path twice in one layer: nothing was introduced earlier
	}
	return old
}

// replaceNonDir handles a directory entry: a directory replaces a file or
// symlink of a lower layer at the same path, but merges with a directory.
func (st *fsState) replaceNonDir(p string, layer int) {
	if e, ok := st.entries[p]; ok && e.layer < layer {
		st.remove(p)
	}
}

// put stores e at p. Packages that were already in old (same extractor,
// name and version) keep the layer that introduced them: a layer that
// rewrites the dpkg status to add one package did not introduce the others.
func (st *fsState) put(p string, e *pathEntry, old *pathEntry) {
	if old != nil && len(old.pkgs) > 0 {
		type key struct{ typ, name, version string }
		introduced := make(map[key]int, len(old.pkgs))
		for _, f := range old.pkgs {
			introduced[key{f.pkg.Type, f.pkg.Name, f.pkg.Version}] = f.layer
		}
		for i := range e.pkgs {
			f := &e.pkgs[i]
			if l, ok := introduced[key{f.pkg.Type, f.pkg.Name, f.pkg.Version}]; ok {
				f.layer = l
			}
		}
	}
	st.remove(p)
	st.entries[p] = e
	st.packageCount += len(e.pkgs)
	for _, f := range e.pkgs {
		st.packageBytes += f.size()
	}
	for d := parentDir(p); d != ""; d = parentDir(d) {
		if _, ok := st.dirs[d]; ok {
			break // its ancestors are there already
		}
		st.dirs[d] = struct{}{}
	}
}

// applyChanges deletes what layer index whited out from the layers below.
// Entries written by the layer itself are kept: an opaque directory is
// usually filled again by the same layer.
func (st *fsState) applyChanges(index int, ch *layerChanges) {
	if len(ch.gone) == 0 && len(ch.opaque) == 0 {
		return
	}
	for p, e := range st.entries {
		if e.layer < index && ch.deletes(p) {
			st.remove(p) // deleting during range is allowed
		}
	}
}

// deletes reports whether p is whited out: p or a directory above it is
// gone, or a directory strictly above it is opaque.
func (ch *layerChanges) deletes(p string) bool {
	if _, ok := ch.gone[p]; ok {
		return true
	}
	for d := p; d != ""; {
		d = parentDir(d)
		if _, ok := ch.gone[d]; ok && d != "" {
			return true
		}
		if _, ok := ch.opaque[d]; ok {
			return true
		}
	}
	return false
}

// parentDir returns the directory above p, "" for a top-level name (the
// root is "").
func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

// maxSymlinkHops bounds symlink resolution, like the kernel's limit of 40.
const maxSymlinkHops = 40

// readFile returns the content of an OS identification file at p in the
// final filesystem, following symlinks in p and in its directories. Links
// resolve inside the image only: an absolute target starts at the image
// root and ".." stops there, as they would in a container.
func (st *fsState) readFile(p string) ([]byte, bool) {
	return st.resolve(p, nil)
}

// resolve is readFile that also calls visit with every path it looks up
// on the way, links and the final file.
func (st *fsState) resolve(p string, visit func(string)) ([]byte, bool) {
	for range maxSymlinkHops {
		if visit != nil {
			visit(p)
		}
		if e, ok := st.entries[p]; ok {
			if e.link == "" {
				return e.content, e.content != nil
			}
			p = resolveLink(p, e.link)
			continue
		}
		// A symlinked directory above p (e.g. etc -> usr/etc)?
		resolved := false
		for d := parentDir(p); d != ""; d = parentDir(d) {
			if e, ok := st.entries[d]; ok && e.link != "" {
				p = path.Join(resolveLink(d, e.link), strings.TrimPrefix(p, d+"/"))
				p, _ = cleanPath(p)
				resolved = true
				break
			}
		}
		if !resolved {
			return nil, false
		}
	}
	return nil, false
}

// resolveLink returns the image path a symlink at linkPath points to.
func resolveLink(linkPath, target string) string {
	if !path.IsAbs(target) {
		target = path.Join(parentDir(linkPath), target)
	}
	p, _ := cleanPath(target) // NULs were removed when the link was stored
	return p
}

// packages turns what is left at the end into the inventory's package list,
// now that the OS is known.
func (st *fsState) packages(osInfo OS, layers []Layer) []Package {
	out := []Package{}
	for _, e := range st.entries {
		for _, f := range e.pkgs {
			p := f.pkg
			p.LayerIndex = f.layer
			if f.layer >= 0 && f.layer < len(layers) {
				p.Layer = layers[f.layer].Digest
			}
			if f.os != nil {
				p.Ecosystem = osInfo.Ecosystem
				p.PURL = osPURL(p, f.os, osInfo)
			}
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Package) int {
		return cmp.Or(
			cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.Version, b.Version),
			cmp.Compare(a.Location, b.Location),
			cmp.Compare(a.Type, b.Type),
		)
	})
	return onePerCrate(out)
}

// onePerCrate lists a crates.io package once per name and version: a
// Rust application's Cargo.lock and its cargo-auditable binary name the
// same crates, which are one package in the image. The binary's entry is
// kept (it is what runs), else the first by location.
func onePerCrate(pkgs []Package) []Package {
	kept := map[nameVersion]int{}
	for i, p := range pkgs {
		if p.Ecosystem != "crates.io" {
			continue
		}
		k := nameVersion{p.Name, p.Version}
		if j, ok := kept[k]; !ok || (p.Type == "rust-binary" && pkgs[j].Type != "rust-binary") {
			kept[k] = i
		}
	}
	out := pkgs[:0]
	for i, p := range pkgs {
		if p.Ecosystem == "crates.io" && kept[nameVersion{p.Name, p.Version}] != i {
			continue
		}
		out = append(out, p)
	}
	return out
}

// remembersBelow reports whether anything is remembered at p or beneath
// it: only then can a whiteout or an opaque marker for p delete something.
// Whiteouts for anything else are not kept, so a flood of them costs no
// memory. The root ("") is beneath nothing and above everything.
func (st *fsState) remembersBelow(p string) bool {
	if p == "" {
		return len(st.entries) > 0
	}
	if _, ok := st.entries[p]; ok {
		return true
	}
	_, ok := st.dirs[p]
	return ok
}

// pruneOSFiles forgets the OS identification files kept as possible symlink
// targets that no symlink now reaches from one of the osFiles paths.
func (st *fsState) pruneOSFiles() {
	if len(st.osCandidates) == 0 {
		return
	}
	reached := map[string]struct{}{}
	for f := range osFiles {
		st.resolve(f, func(p string) { reached[p] = struct{}{} })
	}
	for p := range st.osCandidates {
		if _, ok := reached[p]; !ok {
			st.remove(p)
		}
	}
}
