package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Bounds on the htpasswd file: it is read on every change, so a file that
// grew by mistake (a log written to the wrong path) fails clearly instead of
// filling memory.
const (
	maxHtpasswdBytes = 8 << 20
	maxHtpasswdUsers = 100_000
	maxUserLength    = 256
	// maxBcryptCost refuses hashes that would take seconds per check (cost
	// 16 is about 5 s on one core); htpasswd -B uses 5 by default.
	maxBcryptCost = 16
	// reloadCheckInterval is how often the file's modification time is
	// looked at; a changed file is read again.
	reloadCheckInterval = time.Second
)

// Anonymous is the user name requests without credentials are matched as in
// access rules; no htpasswd entry may take it.
const Anonymous = "anonymous"

// parseHtpasswd reads "user:hash" lines. Only bcrypt hashes ($2y$, $2a$,
// $2b$, as `htpasswd -B` writes them) are accepted: the other formats
// htpasswd knows (MD5 apr1, SHA1, crypt, plain) are weak, and skipping them
// silently would lock users out without saying why. Blank lines and lines
// starting with '#' are ignored.
func parseHtpasswd(r io.Reader) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(io.LimitReader(r, maxHtpasswdBytes+1))
	sc.Buffer(make([]byte, 0, 4096), 4096)
	line, read := 0, 0
	for sc.Scan() {
		line++
		read += len(sc.Bytes()) + 1
		if read > maxHtpasswdBytes {
			return nil, fmt.Errorf("larger than %d bytes", maxHtpasswdBytes)
		}
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(strings.TrimSpace(text), "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want user:bcrypt-hash", line)
		}
		if err := checkUserName(user); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice", line, user)
		}
		if err := checkBcrypt(hash); err != nil {
			return nil, fmt.Errorf("line %d (user %q): %w", line, user, err)
		}
		if len(users) == maxHtpasswdUsers {
			return nil, fmt.Errorf("line %d: more than %d users", line, maxHtpasswdUsers)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than 4096 bytes", line+1)
		}
		return nil, err
	}
	return users, nil
}

func checkUserName(user string) error {
	switch {
	case user == "":
		return errors.New("empty user name")
	case len(user) > maxUserLength:
		return fmt.Errorf("user name longer than %d bytes", maxUserLength)
	case user == Anonymous:
		return fmt.Errorf("user name %q is reserved for requests without credentials", Anonymous)
	}
	for _, c := range user {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("user name %q contains spaces or control characters", user)
		}
	}
	return nil
}

// checkBcrypt accepts a well-formed bcrypt hash of a sensible cost.
func checkBcrypt(hash string) error {
	if !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") {
		kind := "an unsupported hash"
		switch {
		case strings.HasPrefix(hash, "$apr1$"):
			kind = "an MD5 (apr1) hash"
		case strings.HasPrefix(hash, "{SHA}"):
			kind = "a SHA1 hash"
		case strings.HasPrefix(hash, "$"):
		default:
			kind = "a crypt or plain-text password"
		}
		return fmt.Errorf("%s; only bcrypt is accepted: recreate the entry with `htpasswd -B`", kind)
	}
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return fmt.Errorf("malformed bcrypt hash: %w", err)
	}
	// bcrypt.Cost does not check the length of salt and digest.
	if len(hash) != 60 {
		return fmt.Errorf("malformed bcrypt hash: %d characters, want 60", len(hash))
	}
	if cost > maxBcryptCost {
		return fmt.Errorf("bcrypt cost %d is above %d: each login would take seconds", cost, maxBcryptCost)
	}
	return nil
}

// htpasswdFile is the user table, read again when the file changes. A file
// that no longer parses keeps the last good table (and is reported), so a
// half-saved edit does not lock everyone out.
type htpasswdFile struct {
	path string
	now  func() time.Time
	// onReload reports each reload attempt: nil error for success.
	onReload func(users int, err error)

	mu        sync.Mutex
	users     map[string][]byte
	stamp     fileStamp
	lastCheck time.Time
}

// fileStamp identifies a version of the file without reading it.
type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

func loadHtpasswd(path string, now func() time.Time, onReload func(int, error)) (*htpasswdFile, error) {
	f := &htpasswdFile{path: path, now: now, onReload: onReload}
	users, stamp, err := readHtpasswd(path)
	if err != nil {
		return nil, err
	}
	f.users, f.stamp, f.lastCheck = users, stamp, now()
	return f, nil
}

func readHtpasswd(path string) (map[string][]byte, fileStamp, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("auth.htpasswd: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("auth.htpasswd: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(fh, maxHtpasswdBytes+1))
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("auth.htpasswd %s: %w", path, err)
	}
	users, err := parseHtpasswd(bytes.NewReader(raw))
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("auth.htpasswd %s: %w", path, err)
	}
	return users, stampOf(st), nil
}

// hash returns the user's current bcrypt hash, reading the file again first
// when it changed (looked at no more than once a second).
func (f *htpasswdFile) hash(user string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := f.now(); now.Sub(f.lastCheck) >= reloadCheckInterval || now.Before(f.lastCheck) {
		f.lastCheck = now
		f.reloadLocked()
	}
	h, ok := f.users[user]
	return h, ok
}

func (f *htpasswdFile) reloadLocked() {
	st, err := os.Stat(f.path)
	if err != nil {
		if f.stamp != (fileStamp{}) { // report once per change
			f.stamp = fileStamp{}
			f.onReload(len(f.users), fmt.Errorf("auth.htpasswd: %w (keeping the %d users read before)", err, len(f.users)))
		}
		return
	}
	if stampOf(st) == f.stamp {
		return
	}
	users, stamp, err := readHtpasswd(f.path)
	if err != nil {
		f.stamp = stampOf(st) // report once per change, not once a second
		f.onReload(len(f.users), fmt.Errorf("%w (keeping the %d users read before)", err, len(f.users)))
		return
	}
	f.users, f.stamp = users, stamp
	f.onReload(len(users), nil)
}

func stampOf(st os.FileInfo) fileStamp {
	s := fileStamp{mtime: st.ModTime(), size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ino = uint64(sys.Ino)
	}
	return s
}
