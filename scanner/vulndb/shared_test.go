package vulndb

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A Shared database in use by a server must not lock out an importer, and
// the server must see what was imported.
func TestSharedLetsAnotherOpenerIn(t *testing.T) {
	dir := t.TempDir()
	s := NewShared(dir)
	ctx := context.Background()
	if v := s.Version(); v != "" {
		t.Fatalf("empty database version %q", v)
	}
	importer, err := Open(dir) // another process, as far as bbolt is concerned
	if err != nil {
		t.Fatalf("import while shared: %v", err)
	}
	if _, err := importer.Import(ctx, []string{osvTestdata(t, "alpine")}, nil); err != nil {
		t.Fatal(err)
	}
	want := importer.Version()

	// While the importer holds it, a match waits instead of failing.
	done := make(chan error, 1)
	go func() {
		_, _, err := s.MatchVersioned(ctx, []Query{{Ecosystem: "Alpine:v3.16", Name: "busybox", SourceName: "busybox", Version: "1.35.0-r17"}})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	importer.Close()
	if err := <-done; err != nil {
		t.Fatalf("match after the importer left: %v", err)
	}
	if got := s.Version(); got != want {
		t.Fatalf("version %q, want %q", got, want)
	}
	holder, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := OpenWait(short, dir); !errors.Is(err, ErrInUse) {
		t.Fatalf("OpenWait past its deadline: %v", err)
	}
	if got := s.Version(); got != want {
		t.Fatalf("busy database: version %q, want the last seen %q", got, want)
	}
}
