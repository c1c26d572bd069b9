package vulndb

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// eachSampledRecord calls fn with every parsable record of the shared real
// records (a seventh of the directories holding more than 500).
func eachSampledRecord(t *testing.T, fn func(file string, rec *record)) {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(osvTestdata(t), "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for i, f := range files {
			if len(files) > 500 && i%7 != 0 {
				continue // a seventh of the big directories is plenty
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := parseRecord(data)
			if err != nil {
				continue
			}
			fn(f, rec)
		}
	}
}

// Every entry of the shared real records reads back from the binary form
// exactly as from the JSON form that index values had before it.
func TestBinaryEntryMatchesJSON(t *testing.T) {
	n := 0
	eachSampledRecord(t, func(f string, rec *record) {
		for _, e := range rec.Entries {
			fromJSON, err := decodeEntry(e.Encoded)
			if err != nil {
				t.Fatalf("%s: JSON: %v", f, err)
			}
			fromBinary, err := decodeEntry(encodeEntry(&e.Entry))
			if err != nil {
				t.Fatalf("%s: binary: %v", f, err)
			}
			if !reflect.DeepEqual(fromJSON, fromBinary) {
				t.Fatalf("%s: binary form reads\n%+v\nJSON form\n%+v", f, fromBinary, fromJSON)
			}
			n++
		}
	})
	if n < 1000 {
		t.Errorf("only %d entries compared", n)
	}
}

// FuzzDecodeEntry: index values come from a file on disk; a damaged one is
// an error, never a panic or a huge allocation, and whatever decodes
// encodes back to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(&entry{ID: "GHSA-1", Package: "lodash", Aliases: []string{"CVE-1"}, Summary: "s",
		Parts: []part{{Ranges: []vrange{{Semver: true, Events: []event{{"introduced", "0"}, {"fixed", "1.2.3"}}}},
			Versions: []string{"0.9"}, Severity: severity{Level: "HIGH", Score: 7.5, Vector: "CVSS:3.1/AV:N"}}}}))
	f.Add([]byte{binaryEntryTag})
	f.Add([]byte{binaryEntryTag, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte(`{"id":"X","pk":"p","p":[]}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		e, err := decodeEntry(v)
		if err != nil || len(v) == 0 || v[0] != binaryEntryTag {
			return
		}
		again, err := decodeEntry(encodeEntry(&e))
		// Compared encoded: a NaN score is not equal to itself.
		if err != nil || !bytes.Equal(encodeEntry(&e), encodeEntry(&again)) {
			t.Fatalf("round trip: %+v, %v; first %+v", again, err, e)
		}
	})
}

// versionsAround lists first, then every version e's lists and range events
// name, each also with "1" and "~1" appended (just past it in most orders).
func versionsAround(e *entry, first ...string) []string {
	versions := append([]string(nil), first...)
	for _, p := range e.Parts {
		versions = append(versions, p.Versions...)
		for _, r := range p.Ranges {
			for _, ev := range r.Events {
				versions = append(versions, ev.Version, ev.Version+"1", ev.Version+"~1")
			}
		}
	}
	return versions
}
