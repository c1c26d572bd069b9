package upstream

import (
	"errors"
	"strings"
	"testing"
)

func FuzzCheckManifest(f *testing.F) {
	f.Add("application/vnd.oci.image.manifest.v1+json", `{"schemaVersion":2,"config":{},"layers":[]}`)
	f.Add("application/json", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	f.Add("text/html", `<html></html>`)
	f.Add("", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}`)
	f.Fuzz(func(t *testing.T, contentType, body string) {
		mt, err := checkManifest(contentType, []byte(body))
		if err != nil {
			if !errors.Is(err, ErrInvalidManifest) || mt != "" {
				t.Fatalf("checkManifest(%q, %q) = %q, %v", contentType, body, mt, err)
			}
			return
		}
		if !IsManifestMediaType(mt) {
			t.Fatalf("checkManifest(%q, %q) accepted type %q", contentType, body, mt)
		}
	})
}

func FuzzDecodeTags(f *testing.F) {
	f.Add(`{"name":"r","tags":["a","b"]}`)
	f.Add(`{"tags":null}`)
	f.Add(`{"tags":[1]}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		const limit = 4
		tags, err := decodeTags(strings.NewReader(body), nil, limit)
		if err == nil && len(tags) > limit {
			t.Fatalf("decodeTags(%q) = %d tags past the limit %d", body, len(tags), limit)
		}
	})
}

func TestDecodeTags(t *testing.T) {
	tests := []struct {
		body string
		want int // -1: error
	}{
		{`{"name":"r","tags":["a","b"]}`, 2},
		{`{"tags":null,"name":"r"}`, 0},
		{`{}`, 0},
		{`{"tags":["a","b","c","d","e"]}`, -1}, // past the limit of 4
		{`{"tags":"a"}`, -1},
		{`{"tags":[1]}`, -1},
		{`{"tags":["a"]`, -1},
		{`["a"]`, -1},
		{``, -1},
	}
	for _, tc := range tests {
		tags, err := decodeTags(strings.NewReader(tc.body), nil, 4)
		if (tc.want < 0) != (err != nil) || (err == nil && len(tags) != tc.want) {
			t.Errorf("decodeTags(%q) = %v, %v; want %d tags", tc.body, tags, err, tc.want)
		}
	}
}
