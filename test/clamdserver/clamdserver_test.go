package clamdserver

import (
	"crypto/sha256"
	"fmt"
	"os"
	"testing"
)

// The server answers PING while the test runs, not after Stop, and leaves
// nothing behind once the test ended.
func TestStartStopCleanup(t *testing.T) {
	var dir string
	t.Run("run", func(t *testing.T) {
		s := Start(t, Config{Signatures: HashSignatures()})
		dir = s.dir
		if err := s.Ping(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(s.Socket); err != nil {
			t.Fatalf("unix socket: %v", err)
		}
		s.Stop()
		if err := s.Ping(); err == nil {
			t.Fatal("PING answered after Stop")
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", dir, err)
	}
}

// EICAR is the standard test file: its published sha256.
func TestEICAR(t *testing.T) {
	const want = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
	if got := fmt.Sprintf("%x", sha256.Sum256(EICAR())); got != want {
		t.Fatalf("EICAR sha256 %s, want %s", got, want)
	}
}
