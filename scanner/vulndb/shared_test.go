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

// Status reads the database once per few seconds, and while another
// process holds the file answers what it read last instead of waiting.
func TestSharedStatus(t *testing.T) {
	dir := t.TempDir()
	s := NewShared(dir)
	ctx := context.Background()
	st, err := s.Status(ctx)
	if err != nil || st.Records != 0 || !st.BuiltAt.IsZero() {
		t.Fatalf("empty database: %+v, %v", st, err)
	}
	s.statusMaxAge = 0 // read every time from here on
	importer, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := importer.Import(ctx, []string{osvTestdata(t, "alpine")}, nil); err != nil {
		t.Fatal(err)
	}
	want, err := importer.Status()
	if err != nil {
		t.Fatal(err)
	}
	// Held by the importer: the last status read, at once.
	start := time.Now()
	if st, err := s.Status(ctx); err != nil || st.Records != 0 {
		t.Fatalf("busy database: %+v, %v; want the last read (0 records)", st, err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("Status waited %v for a busy database", waited)
	}
	importer.Close()
	st, err = s.Status(ctx)
	if err != nil || st.Records != want.Records || st.Records == 0 || !st.BuiltAt.Equal(want.BuiltAt) {
		t.Fatalf("after import: %+v, %v; want %d records built %v", st, err, want.Records, want.BuiltAt)
	}
	// Within the reuse window, no read.
	s.statusMaxAge = time.Hour
	holder, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if st, err := s.Status(ctx); err != nil || st.Records != want.Records {
		t.Fatalf("cached status: %+v, %v", st, err)
	}
}

// A database busy since before any status was read answers an error, not
// a made-up empty status.
func TestSharedStatusNeverRead(t *testing.T) {
	dir := t.TempDir()
	holder, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := NewShared(dir).Status(context.Background()); !errors.Is(err, ErrInUse) {
		t.Fatalf("Status of a busy database never read: %v, want ErrInUse", err)
	}
}
