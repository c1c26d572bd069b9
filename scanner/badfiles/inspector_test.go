package badfiles

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/scanner/clamd"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/test/clamdserver"
)

// importInto imports signature files (name → content) into the database
// in dir, opened and closed around it as 'db import' does.
func importInto(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	db, err := vulndb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	src := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Import(context.Background(), []string{src}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestInspectorHashSignatures(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vulndb")
	hsb, hdb := clamdserver.EICARHashLines()
	importInto(t, dir, map[string]string{"t.hsb": hsb})
	shared := vulndb.NewShared(dir)
	in := NewInspector(shared, 64<<20, nil, 0)
	in.refreshEvery = 0 // every call looks: the test changes the database
	ctx := context.Background()
	key1, err := in.CacheKey(ctx)
	if err != nil || !strings.Contains(key1, "signatures=sha256:") {
		t.Fatalf("cache key %q, %v", key1, err)
	}
	eicar := clamdserver.EICAR()
	if !in.Wants(int64(len(eicar))) || in.Wants(5) || in.Wants(1<<30) {
		t.Fatal("Wants: want the signature's size only")
	}
	fs, err := in.Inspect(ctx, "/usr/bin/x", "sha256:aa", int64(len(eicar)), bytes.NewReader(eicar))
	if err != nil || !slices.Equal(ids(fs), []string{clamdserver.HashSignatureName}) {
		t.Fatalf("findings %q, %v", ids(fs), err)
	}
	// A new feed reaches the inspector and its cache key.
	importInto(t, dir, map[string]string{"t.hdb": hdb})
	key2, err := in.CacheKey(ctx)
	if err != nil || key2 == key1 {
		t.Fatalf("cache key after a new feed: %q (was %q), %v", key2, key1, err)
	}
	fs, err = in.Inspect(ctx, "/usr/bin/x", "sha256:aa", int64(len(eicar)), bytes.NewReader(eicar))
	if err != nil || !slices.Equal(ids(fs), []string{clamdserver.MD5SignatureName, clamdserver.HashSignatureName}) {
		t.Fatalf("findings %q, %v", ids(fs), err)
	}
	if in.MaxSize() != 64<<20 || in.Skipped() != 0 {
		t.Fatalf("max size %d, skipped %d", in.MaxSize(), in.Skipped())
	}
}

func TestInspectorWithoutSignatures(t *testing.T) {
	in := NewInspector(vulndb.NewShared(filepath.Join(t.TempDir(), "vulndb")), 64<<20, nil, 0)
	key, err := in.CacheKey(context.Background())
	if err != nil || key != "badfiles/1" {
		t.Fatalf("cache key %q, %v", key, err)
	}
	if in.Wants(68) {
		t.Fatal("an empty database wants files")
	}
}

func TestInspectorClamd(t *testing.T) {
	srv := clamdserver.Start(t, clamdserver.Config{Signatures: clamdserver.BodySignatures()})
	client, err := clamd.New(srv.TCPURL(), clamd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := NewInspector(nil, 64<<20, client, 1<<10)
	in.refreshEvery = 0
	ctx := context.Background()
	key, err := in.CacheKey(ctx)
	if err != nil || !strings.Contains(key, "clamd=tcp://"+srv.TCP) || !strings.Contains(key, "ClamAV 1.") {
		t.Fatalf("cache key %q, %v", key, err)
	}
	if in.MaxSize() != 1<<10 || !in.Wants(0) || !in.Wants(1<<10) || in.Wants(1<<10+1) || in.Skipped() != 1 {
		t.Fatalf("max size %d, skipped %d", in.MaxSize(), in.Skipped())
	}
	eicar := clamdserver.EICAR()
	fs, err := in.Inspect(ctx, "/app/f", "sha256:cc", int64(len(eicar)), bytes.NewReader(eicar))
	if err != nil || !slices.Equal(ids(fs), []string{clamdserver.BodySignatureName + ".UNOFFICIAL"}) {
		t.Fatalf("findings %q, %v", ids(fs), err)
	}
	srv.Stop()
	if _, err := in.Inspect(ctx, "/app/f", "sha256:cc", int64(len(eicar)), bytes.NewReader(eicar)); err == nil {
		t.Fatal("clamd down: no error")
	}
	if _, err := in.CacheKey(ctx); err == nil {
		t.Fatal("clamd down: a cache key")
	}
}
