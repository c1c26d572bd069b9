package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"mime"
	"net/http"
	"path"
	"time"
)

//go:embed static
var staticDir embed.FS

// staticFiles are the assets, read once, each with its ETag.
type staticFiles struct{ files map[string]staticFile }

type staticFile struct {
	body []byte
	etag string
	mime string
}

func loadStatic() (*staticFiles, error) {
	entries, err := staticDir.ReadDir("static")
	if err != nil {
		return nil, fmt.Errorf("ui: read assets: %w", err)
	}
	s := &staticFiles{files: map[string]staticFile{}}
	for _, e := range entries {
		body, err := staticDir.ReadFile("static/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("ui: read asset %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(body)
		s.files[e.Name()] = staticFile{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`,
			mime: mime.TypeByExtension(path.Ext(e.Name()))}
	}
	return s, nil
}

// serve answers an asset: no-cache with an ETag, so a new binary's assets
// are picked up at once and an unchanged one costs a 304.
func (s *staticFiles) serve(w http.ResponseWriter, r *http.Request, name string) {
	f, ok := s.files[name]
	if !ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("no such asset\n"))
		return
	}
	w.Header().Set("Content-Type", f.mime)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f.etag)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
}
