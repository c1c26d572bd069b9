package proxy

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		header        string
		size          int64
		start, length int64
		status        int
	}{
		{"", 100, 0, 100, 200},
		{"bytes=0-9", 100, 0, 10, 206},
		{"bytes=90-", 100, 90, 10, 206},
		{"bytes=90-200", 100, 90, 10, 206},
		{"bytes=-10", 100, 90, 10, 206},
		{"bytes=-200", 100, 0, 100, 206},
		{"bytes=0-0", 100, 0, 1, 206},
		{"bytes=100-", 100, 0, 0, 416},
		{"bytes=-0", 100, 0, 0, 416},
		{"bytes=0-1,5-6", 100, 0, 100, 200}, // several ranges: ignored
		{"bytes=9-0", 100, 0, 100, 200},     // invalid: ignored
		{"items=0-1", 100, 0, 100, 200},
		{"bytes=x-1", 100, 0, 100, 200},
		{"bytes=0-9", -1, 0, -1, 200}, // unknown size: whole body
	}
	for _, tc := range tests {
		start, length, status, err := parseRange(tc.header, tc.size)
		if err != nil {
			status = err.Status
		}
		if status != tc.status || (status != http.StatusRequestedRangeNotSatisfiable && (start != tc.start || length != tc.length)) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %d; want %d, %d, %d", tc.header, tc.size, start, length, status, tc.start, tc.length, tc.status)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	f.Add("bytes=0-9", int64(100))
	f.Add("bytes=-5", int64(3))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < -1 {
			return
		}
		start, length, status, err := parseRange(h, size)
		if err != nil || status == http.StatusOK {
			return
		}
		if start < 0 || length < 1 || start+length > size {
			t.Fatalf("parseRange(%q, %d) = %d, %d outside the blob", h, size, start, length)
		}
	})
}

// The headers every blob answer carries, with one allocation for all the
// values (and one each for the quoted ETag and the length): through
// Header.Set it took eight.
func TestSetBlobHeaders(t *testing.T) {
	d := digest.FromString("layer")
	tests := []struct {
		source string
		length int64
		want   http.Header
	}{
		{"hit", 1 << 20, http.Header{
			"Content-Type": {"application/octet-stream"}, "Docker-Content-Digest": {d.String()}, "Etag": {`"` + d.String() + `"`},
			"Accept-Ranges": {"bytes"}, "Portcullis-Cache": {"hit"}, "Content-Length": {"1048576"},
		}},
		{"miss", -1, http.Header{ // length unknown: no Content-Length
			"Content-Type": {"application/octet-stream"}, "Docker-Content-Digest": {d.String()}, "Etag": {`"` + d.String() + `"`},
			"Accept-Ranges": {"bytes"}, "Portcullis-Cache": {"miss"},
		}},
	}
	for _, tc := range tests {
		h := http.Header{}
		setBlobHeaders(h, d, tc.source, tc.length)
		if !reflect.DeepEqual(h, tc.want) {
			t.Errorf("setBlobHeaders(%s, %d) = %v, want %v", tc.source, tc.length, h, tc.want)
		}
		// A value added later must not spill into its neighbour's.
		h.Add("Etag", "x")
		if got := h.Values("Portcullis-Cache"); !reflect.DeepEqual(got, []string{tc.source}) {
			t.Errorf("after adding an Etag, Portcullis-Cache = %q", got)
		}
	}
	h := http.Header{}
	if n := testing.AllocsPerRun(100, func() { setBlobHeaders(h, d, "hit", 1<<20) }); n > 3 {
		t.Errorf("setBlobHeaders allocates %.0f times, want at most 3", n)
	}
}
