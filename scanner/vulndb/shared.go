package vulndb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// OpenWait is Open that waits, up to ctx, while another process (a running
// server matching, or an import) holds the database.
func OpenWait(ctx context.Context, dir string) (*DB, error) {
	for {
		db, err := Open(dir)
		if !errors.Is(err, ErrInUse) {
			return db, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Shared keeps the database open only while something uses it, so another
// process can import into it in between: a server matching now and then
// never locks out 'portcullis db import'. Safe for concurrent use.
type Shared struct {
	dir string

	mu      sync.Mutex
	db      *DB
	users   int
	version string // last version seen, for Version when the file is busy
	// status is the last Status read, at statusAt; reused for
	// statusMaxAge so frequent readers (metrics scrapes) do not open the
	// file each time.
	status       Status
	statusAt     time.Time
	statusMaxAge time.Duration
	// versions keeps parsed range bounds while the file is closed
	// between uses (see versionCache).
	versions *versionCache
}

// NewShared opens nothing yet.
func NewShared(dir string) *Shared {
	return &Shared{dir: dir, statusMaxAge: defaultStatusMaxAge, versions: newVersionCache()}
}

// defaultStatusMaxAge is how long Status reuses what it read.
const defaultStatusMaxAge = 5 * time.Second

// statusOpenWait is how long Status waits for a file another process
// holds before it answers the last status read.
const statusOpenWait = 200 * time.Millisecond

// Status is the database's status (version, build time, records), read at
// most once per few seconds; while another process holds the file, the
// last status read (an error only when none was ever read).
func (s *Shared) Status(ctx context.Context) (Status, error) {
	s.mu.Lock()
	if !s.statusAt.IsZero() && time.Since(s.statusAt) < s.statusMaxAge {
		defer s.mu.Unlock()
		return s.status, nil
	}
	s.mu.Unlock()
	wait, cancel := context.WithTimeout(ctx, statusOpenWait)
	defer cancel()
	db, err := s.acquire(wait)
	if err == nil {
		var st Status
		st, err = db.Status()
		s.release()
		if err == nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.status, s.statusAt, s.version = st, time.Now(), st.Version
			return st, nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.statusAt.IsZero() {
		return Status{}, fmt.Errorf("vulnerability database status: %w", err)
	}
	return s.status, nil
}

func (s *Shared) acquire(ctx context.Context) (*DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		db, err := OpenWait(ctx, s.dir)
		if err != nil {
			return nil, err
		}
		db.versions = s.versions
		s.db = db
	}
	s.users++
	return s.db, nil
}

func (s *Shared) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.users == 0 {
		s.db.Close()
		s.db = nil
	}
}

// MatchVersioned matches and says against which database version, with
// one open of the file.
func (s *Shared) MatchVersioned(ctx context.Context, qs []Query) ([]Finding, string, error) {
	db, err := s.acquire(ctx)
	if err != nil {
		return nil, "", err
	}
	defer s.release()
	findings, version, err := db.MatchVersioned(ctx, qs)
	if err == nil {
		s.remember(version)
	}
	return findings, version, err
}

// remember keeps the last version seen, for Version while the file is busy.
func (s *Shared) remember(version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version = version
}

// Version is the current database version; while another process holds
// the file for longer than two seconds, the last version seen.
func (s *Shared) Version() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	db, err := s.acquire(ctx)
	if err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.version
	}
	defer s.release()
	v := db.Version()
	s.remember(v)
	return v
}

// Update downloads and imports sources, holding the database meanwhile.
func (s *Shared) Update(ctx context.Context, sources []Source, client *http.Client, progress io.Writer) (ImportStats, error) {
	db, err := s.acquire(ctx)
	if err != nil {
		return ImportStats{}, err
	}
	defer s.release()
	stats, err := db.Update(ctx, sources, client, progress)
	s.remember(db.Version())
	s.mu.Lock()
	s.statusAt = time.Time{} // the cached Status is out of date now
	s.mu.Unlock()
	return stats, err
}

// SignatureMatcher opens the database for one scan's hash signature
// lookups (see DB.SignatureMatcher); release ends that use. A database
// without signatures is released at once (its matcher answers without
// reading the file), so only deployments that import signatures hold the
// file open through their scans.
func (s *Shared) SignatureMatcher(ctx context.Context, hashMaxFile int64) (m *SignatureMatcher, release func(), err error) {
	db, err := s.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err = db.SignatureMatcher(hashMaxFile)
	if err != nil || m.Empty() {
		s.release()
		return m, func() {}, err
	}
	var once sync.Once
	return m, func() { once.Do(s.release) }, nil
}

// SignatureSizes builds the size index of the database's signatures (see
// DB.SignatureSizes), holding the file only meanwhile.
func (s *Shared) SignatureSizes(ctx context.Context) (*SizeIndex, error) {
	db, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer s.release()
	return db.SignatureSizes()
}

// SignatureVersion is the version of the signature set (see
// SignatureMatcher.Version): cheap, it reads only the list of signature
// files. "" when there are none.
func (s *Shared) SignatureVersion(ctx context.Context) (string, error) {
	db, err := s.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer s.release()
	m, err := db.SignatureMatcher(0)
	if err != nil {
		return "", err
	}
	return m.Version(), nil
}
