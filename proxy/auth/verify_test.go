package auth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// newTestVerifier writes an htpasswd file of users (name → password) and
// returns a verifier that counts its bcrypt comparisons.
func newTestVerifier(t *testing.T, users map[string]string) (*verifier, *atomic.Int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "htpasswd")
	var content string
	for u, pw := range users {
		content += u + ":" + bcryptHash(t, pw, "2y") + "\n"
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := loadHtpasswd(path, time.Now, func(int, error) {})
	if err != nil {
		t.Fatal(err)
	}
	v, err := newVerifier(file)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	inner := v.compare
	v.compare = func(h, p []byte) error { n.Add(1); return inner(h, p) }
	return v, &n
}

// TestVerifierRemembersSuccessOnly: a pull of many blobs with the same
// credentials costs one bcrypt check; wrong passwords are checked every
// time and never remembered.
func TestVerifierRemembersSuccessOnly(t *testing.T) {
	v, compares := newTestVerifier(t, map[string]string{"ci-bot": "s3cret"})
	ctx := context.Background()
	for i := range 20 {
		if ok, err := v.verify(ctx, "ci-bot", "s3cret"); !ok || err != nil {
			t.Fatalf("request %d: %v %v", i, ok, err)
		}
	}
	if n := compares.Load(); n != 1 {
		t.Fatalf("20 requests cost %d bcrypt checks, want 1", n)
	}
	for i := range 3 {
		if ok, _ := v.verify(ctx, "ci-bot", "wrong"); ok {
			t.Fatalf("attempt %d: wrong password accepted", i)
		}
		if ok, _ := v.verify(ctx, "nobody", "s3cret"); ok {
			t.Fatalf("attempt %d: unknown user accepted", i)
		}
	}
	if n := compares.Load(); n != 1+6 {
		t.Fatalf("6 failed attempts cost %d bcrypt checks, want 6 (never remembered)", n-1)
	}
	if n := v.remembered(); n != 1 {
		t.Fatalf("%d checks remembered, want 1", n)
	}
	// Another password of the same user is not the remembered one.
	if ok, _ := v.verify(ctx, "ci-bot", "s3cret "); ok {
		t.Fatal("password with a trailing space accepted")
	}
}

func TestVerifierBoundsRemembered(t *testing.T) {
	users := map[string]string{}
	for i := range 3 {
		users[fmt.Sprint("u", i)] = "pw"
	}
	v, _ := newTestVerifier(t, users)
	for i := range maxRemembered + 10 {
		v.remember(fmt.Sprint("key", i), []byte("h"))
	}
	if n := v.remembered(); n != maxRemembered {
		t.Fatalf("%d entries remembered, bound %d", n, maxRemembered)
	}
}
