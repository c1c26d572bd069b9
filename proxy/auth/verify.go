package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"
)

const (
	// maxRemembered bounds the successful checks kept; past it one entry
	// is dropped per new one (a dropped entry only costs one more bcrypt).
	maxRemembered = 4096
	// slotWait is how long a check waits for a free CPU slot before the
	// request is refused as busy: a flood of wrong passwords must not
	// queue up unbounded bcrypt work.
	slotWait = 10 * time.Second
)

// errBusy means every bcrypt slot stayed taken for slotWait.
var errBusy = errors.New("too many password checks in progress")

// verifier checks passwords against the htpasswd table. A bcrypt check
// costs 50-100 ms of CPU, and clients send the credentials with every
// request (a pull of 20 layers is 20+ requests), so successful checks are
// remembered, keyed by the user and a keyed hash of the password, together
// with the bcrypt hash they matched: a changed or removed entry in the file
// no longer matches. Failed checks are never remembered.
type verifier struct {
	file   *htpasswdFile
	secret []byte        // HMAC key: memory holds no plain hash of any password
	slots  chan struct{} // bounds concurrent bcrypt work to the CPUs
	flight singleflight.Group
	// dummy is checked for unknown users so they take as long as known ones
	// (no user enumeration by timing).
	dummy []byte
	// compare is bcrypt.CompareHashAndPassword (tests count the calls).
	compare func(hash, password []byte) error

	mu   sync.Mutex
	good map[string][]byte // rememberKey → bcrypt hash it matched
}

func newVerifier(file *htpasswdFile) (*verifier, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("auth: random key: %w", err)
	}
	dummy, err := bcrypt.GenerateFromPassword(secret[:16], bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("auth: dummy hash: %w", err)
	}
	return &verifier{
		file:    file,
		secret:  secret,
		slots:   make(chan struct{}, runtime.GOMAXPROCS(0)),
		dummy:   dummy,
		compare: bcrypt.CompareHashAndPassword,
		good:    map[string][]byte{},
	}, nil
}

// verify reports whether password is user's. The error is errBusy or the
// context's; a wrong password is (false, nil).
func (v *verifier) verify(ctx context.Context, user, password string) (bool, error) {
	hash, known := v.file.hash(user)
	key := v.rememberKey(user, password)
	if known {
		v.mu.Lock()
		matched, ok := v.good[key]
		v.mu.Unlock()
		if ok && subtle.ConstantTimeCompare(matched, hash) == 1 {
			return true, nil
		}
	} else {
		hash = v.dummy
	}
	// Concurrent requests with the same credentials (a client pulling
	// layers in parallel right after login) share one check.
	ch := v.flight.DoChan(key, func() (any, error) {
		return v.check(hash, password)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return false, res.Err
		}
		ok := res.Val.(bool) && known
		if ok {
			v.remember(key, hash)
		}
		return ok, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// check runs one bcrypt comparison in a free slot. It does not take the
// caller's context: callers sharing the check may still want its answer.
func (v *verifier) check(hash []byte, password string) (bool, error) {
	wait := time.NewTimer(slotWait)
	defer wait.Stop()
	select {
	case v.slots <- struct{}{}:
	case <-wait.C:
		return false, errBusy
	}
	defer func() { <-v.slots }()
	return v.compare(hash, []byte(password)) == nil, nil
}

func (v *verifier) rememberKey(user, password string) string {
	m := hmac.New(sha256.New, v.secret)
	m.Write([]byte(password))
	return user + "\x00" + string(m.Sum(nil))
}

func (v *verifier) remember(key string, hash []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.good[key]; !ok && len(v.good) >= maxRemembered {
		for k := range v.good { // map order is random: drop any one
			delete(v.good, k)
			break
		}
	}
	v.good[key] = hash
}

// remembered is the number of checks kept (for tests).
func (v *verifier) remembered() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.good)
}
