package containerd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const (
	// maxDirEntries bounds how many entries of the certs directory one
	// pass looks at for files to remove.
	maxDirEntries = 4096
	// maxManagedFile bounds how much of an existing file is read to
	// compare it with what should be there; ours are far smaller.
	maxManagedFile = MaxCABytes + 4096
	tempPrefix     = ".portcullis-tmp-"
)

// Desired is the configuration one pass writes.
type Desired struct {
	Mirror     string     // from ParseMirror
	CA         []byte     // PEM checked by CheckCA; nil: the system roots
	Registries []Registry // names checked by ValidateName; DefaultRegistry is added
	FailOpen   bool
}

// Result says what one pass did.
type Result struct {
	Written []string // files created or repaired
	Removed []string // files of ours no longer wanted
	// Foreign are registry directories whose hosts.toml (or CA file) is not
	// ours: left alone, so their pulls do not go through the mirror.
	Foreign []string
}

// Validate checks that every registry of d can be written; Sync writes
// nothing for a Desired that fails it.
func (d Desired) Validate() error {
	for _, r := range d.Registries {
		if err := ValidateName(r.Name); err != nil {
			return err
		}
	}
	return nil
}

// Changed reports whether the pass wrote or removed anything.
func (r Result) Changed() bool { return len(r.Written) > 0 || len(r.Removed) > 0 }

// Sync makes certsDir hold exactly the files of d that are ours: it writes
// missing ones, repairs ours that drifted, removes ours no longer wanted,
// and never touches a file without the Marker. Files are replaced by
// rename, so containerd never reads half a file (which it would ignore and
// then go to the origin).
func Sync(certsDir string, d Desired) (Result, error) {
	var res Result
	info, err := os.Stat(certsDir)
	if err != nil {
		return res, fmt.Errorf("certs directory %s: %w", certsDir, err)
	}
	if !info.IsDir() {
		return res, fmt.Errorf("certs directory %s: not a directory", certsDir)
	}
	if err := d.Validate(); err != nil {
		return res, err
	}
	// Keyed by directory name.
	want := map[string]Registry{DefaultRegistry: {Name: DefaultRegistry}}
	for _, r := range d.Registries {
		if r.Name != DefaultRegistry {
			want[DirName(r.Name)] = r
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)

	var errs []error
	for _, name := range names {
		if err := syncRegistry(certsDir, want[name], d, &res); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeUnwanted(certsDir, want, &res); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

func syncRegistry(certsDir string, reg Registry, d Desired, res *Result) error {
	dir := filepath.Join(certsDir, DirName(reg.Name))
	switch info, err := os.Lstat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("registry directory %s: %w", dir, err)
	case !info.IsDir():
		// A symlink or file is someone else's arrangement.
		res.Foreign = append(res.Foreign, dir)
		return nil
	}
	hosts := filepath.Join(dir, HostsFile)
	ca := filepath.Join(dir, CAFile)
	for _, p := range []string{hosts, ca} {
		state, _, err := inspect(p)
		if err != nil {
			return err
		}
		if state == foreign {
			res.Foreign = append(res.Foreign, p)
			return nil
		}
	}
	removeStaleTemps(dir)
	// The CA first: hosts.toml refers to it.
	if d.CA != nil {
		if err := ensure(ca, RenderCA(d.CA), res); err != nil {
			return err
		}
	}
	if err := ensure(hosts, RenderHosts(reg, d.Mirror, d.CA != nil, d.FailOpen), res); err != nil {
		return err
	}
	if d.CA == nil {
		if err := removeOurs(ca, res); err != nil {
			return err
		}
	}
	return nil
}

type fileState int

const (
	missing fileState = iota
	ours
	foreign
)

// inspect says whose the file at p is, and returns its content when ours.
func inspect(p string) (fileState, []byte, error) {
	info, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return missing, nil, nil
	}
	if err != nil {
		return missing, nil, fmt.Errorf("inspect %s: %w", p, err)
	}
	if !info.Mode().IsRegular() {
		return foreign, nil, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return missing, nil, fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManagedFile+1))
	if err != nil {
		return missing, nil, fmt.Errorf("read %s: %w", p, err)
	}
	if !hasMarker(data) {
		return foreign, nil, nil
	}
	return ours, data, nil
}

// hasMarker reports whether data starts with the Marker line.
func hasMarker(data []byte) bool {
	line, _, found := bytes.Cut(data, []byte("\n"))
	return found && string(bytes.TrimRight(line, "\r")) == Marker
}

// ensure writes content to p unless p already holds exactly that. The
// caller has checked that p is missing or ours.
func ensure(p string, content []byte, res *Result) error {
	state, have, err := inspect(p)
	if err != nil {
		return err
	}
	if state == foreign {
		res.Foreign = append(res.Foreign, p)
		return nil
	}
	if state == ours && bytes.Equal(have, content) {
		return nil
	}
	if err := writeAtomic(p, content); err != nil {
		return err
	}
	res.Written = append(res.Written, p)
	return nil
}

// writeAtomic writes content to a temporary file in p's directory, syncs
// it and renames it over p: readers see the old file or the new one.
func writeAtomic(p string, content []byte) error {
	dir := filepath.Dir(p)
	tmp, err := os.CreateTemp(dir, tempPrefix+filepath.Base(p)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(content); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	done = true
	// Make the rename itself durable; a failure here leaves a correct file.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// removeOurs removes p if it carries the Marker.
func removeOurs(p string, res *Result) error {
	state, _, err := inspect(p)
	if err != nil || state != ours {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	res.Removed = append(res.Removed, p)
	return nil
}

// removeUnwanted removes our files from registry directories no longer
// configured, and the directory when that leaves it empty.
func removeUnwanted(certsDir string, want map[string]Registry, res *Result) error {
	d, err := os.Open(certsDir)
	if err != nil {
		return fmt.Errorf("list %s: %w", certsDir, err)
	}
	defer d.Close()
	entries, err := d.ReadDir(maxDirEntries)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("list %s: %w", certsDir, err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		if _, ok := want[e.Name()]; ok {
			continue
		}
		dir := filepath.Join(certsDir, e.Name())
		hosts := filepath.Join(dir, HostsFile)
		if state, _, err := inspect(hosts); err != nil || state != ours {
			// Only a directory whose hosts.toml is ours is ours to clean.
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		// hosts.toml goes first: without it containerd no longer reads
		// the directory, so a CA file left behind does no harm.
		for _, p := range []string{hosts, filepath.Join(dir, CAFile)} {
			if err := removeOurs(p, res); err != nil {
				errs = append(errs, err)
			}
		}
		removeStaleTemps(dir)
		// Fails, harmlessly, when someone else's files are still there.
		os.Remove(dir)
	}
	return errors.Join(errs...)
}

// removeStaleTemps removes temporary files a crashed pass left in dir.
func removeStaleTemps(dir string) {
	matches, err := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	if err != nil {
		return
	}
	for _, m := range matches {
		if strings.HasPrefix(filepath.Base(m), tempPrefix) {
			os.Remove(m)
		}
	}
}
