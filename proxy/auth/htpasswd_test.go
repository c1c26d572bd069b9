package auth

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// bcryptHash hashes password at the lowest cost (tests only) with the given
// version prefix ("2a", "2b", "2y": the same algorithm).
func bcryptHash(t testing.TB, password, version string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return "$" + version + string(h[3:])
}

func TestParseHtpasswd(t *testing.T) {
	y, a, b := bcryptHash(t, "pw-y", "2y"), bcryptHash(t, "pw-a", "2a"), bcryptHash(t, "pw-b", "2b")
	costly := strings.Replace(y, "$04$", "$17$", 1)
	for _, tc := range []struct {
		name, file string
		users      []string
		err        string // substring; empty: valid
	}{
		{"bcrypt of every version, comments, blank lines, CRLF",
			"# team\n\nci-bot:" + y + "\r\nalice:" + a + "\n  \nbob:" + b, []string{"ci-bot", "alice", "bob"}, ""},
		{"empty file", "", nil, ""},
		{"MD5 apr1", "ci-bot:" + y + "\nold:$apr1$abc$def\n", nil, "line 2 (user \"old\"): an MD5 (apr1) hash; only bcrypt"},
		{"SHA1", "sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", nil, "line 1 (user \"sha\"): a SHA1 hash"},
		{"crypt", "c:rl0P4pIFKkE0w", nil, "line 1 (user \"c\"): a crypt or plain-text password"},
		{"plain text", "p:secret", nil, "a crypt or plain-text password"},
		{"sha512-crypt", "s:$6$salt$hash", nil, "an unsupported hash"},
		{"no colon", "\nnocolon\n", nil, "line 2: want user:bcrypt-hash"},
		{"empty user", ":" + y, nil, "line 1: empty user name"},
		{"user listed twice", "u:" + y + "\nu:" + a, nil, "line 2: user \"u\" listed twice"},
		{"reserved anonymous", "anonymous:" + y, nil, "reserved"},
		{"space in user", "a b:" + y, nil, "spaces or control characters"},
		{"truncated hash", "u:" + y[:40], nil, "line 1 (user \"u\"): malformed bcrypt hash"},
		{"hash with trailing text", "u:" + y + "x", nil, "malformed bcrypt hash: 61 characters"},
		{"cost too high", "u:" + costly, nil, "bcrypt cost 17 is above 16"},
		{"overlong line", "u:" + strings.Repeat("x", 5000), nil, "line 1: longer than 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users, err := parseHtpasswd(strings.NewReader(tc.file))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(users) != len(tc.users) {
				t.Fatalf("%d users, want %v", len(users), tc.users)
			}
			for _, u := range tc.users {
				if _, ok := users[u]; !ok {
					t.Errorf("user %s missing", u)
				}
			}
		})
	}
}

func TestParseHtpasswdBounds(t *testing.T) {
	hash := bcryptHash(t, "x", "2y")
	var users bytes.Buffer
	for i := 0; i <= maxHtpasswdUsers; i++ {
		fmt.Fprintf(&users, "u%07d:%s\n", i, hash)
	}
	if _, err := parseHtpasswd(&users); err == nil || !strings.Contains(err.Error(), "line 100001: more than 100000 users") {
		t.Fatalf("%d users parsed: %v", maxHtpasswdUsers+1, err)
	}
	big := bytes.Repeat([]byte("# a comment line that is rather long to fill the file up quickly\n"), maxHtpasswdBytes/64+1)
	if _, err := parseHtpasswd(bytes.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a %d-byte file parsed: %v", len(big), err)
	}
}

func FuzzParseHtpasswd(f *testing.F) {
	h := bcryptHash(f, "pw", "2y")
	for _, s := range []string{
		"ci-bot:" + h + "\n",
		"# c\n\na:" + h + "\r\nb:" + h,
		"x:$apr1$a$b", "x:{SHA}abc", ":", "a:b:c", "anonymous:" + h, "u:$2y$99$" + strings.Repeat("a", 53),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		users, err := parseHtpasswd(bytes.NewReader(raw))
		if err != nil {
			return
		}
		for u, hash := range users {
			if checkUserName(u) != nil || checkBcrypt(string(hash)) != nil {
				t.Fatalf("accepted %q:%q", u, hash)
			}
		}
	})
}

// fakeClock is a settable time for the reload checks.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestHtpasswdReload: a changed file is read again (after the check
// interval); a file that no longer parses keeps the last good users and is
// reported once.
func TestHtpasswdReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	write := func(content string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	write("alice:"+bcryptHash(t, "a-pw", "2y")+"\n", base)
	clock := &fakeClock{now: time.Now()}
	var reports []string
	file, err := loadHtpasswd(path, clock.Now, func(n int, err error) {
		if err != nil {
			reports = append(reports, err.Error())
		} else {
			reports = append(reports, "ok")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := newVerifier(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustVerify := func(user, pw string, want bool) {
		t.Helper()
		if ok, err := v.verify(ctx, user, pw); err != nil || ok != want {
			t.Fatalf("verify(%s) = %v, %v; want %v", user, ok, err, want)
		}
	}
	mustVerify("alice", "a-pw", true)
	mustVerify("bob", "b-pw", false)

	// bob added, alice's password changed.
	write("alice:"+bcryptHash(t, "a-new", "2y")+"\nbob:"+bcryptHash(t, "b-pw", "2b")+"\n", base.Add(time.Minute))
	mustVerify("bob", "b-pw", false) // not looked at before the interval
	clock.Advance(reloadCheckInterval)
	mustVerify("bob", "b-pw", true)
	mustVerify("alice", "a-pw", false) // the remembered check no longer counts
	mustVerify("alice", "a-new", true)

	// A broken edit: bob and alice stay as they were.
	write("alice:"+bcryptHash(t, "a-new", "2y")+"\nbob:$apr1$x$y\n", base.Add(2*time.Minute))
	clock.Advance(reloadCheckInterval)
	mustVerify("bob", "b-pw", true)
	clock.Advance(reloadCheckInterval)
	mustVerify("alice", "a-new", true)
	if len(reports) != 2 || reports[0] != "ok" || !strings.Contains(reports[1], "line 2") || !strings.Contains(reports[1], "keeping the 2 users") {
		t.Fatalf("reports %q; want one reload and one error reported once", reports)
	}
}
