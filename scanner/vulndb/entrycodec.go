package vulndb

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Index values are an entry in a compact binary form, tagged by their first
// byte; values written before it existed are JSON (first byte '{') and
// still read. Matching decodes every entry of each queried package, and
// decoding JSON was more than half of a match's time. The content hash
// (the DB version) is still computed from the JSON form, so the version
// does not depend on how entries are stored.
const binaryEntryTag = 0x01

// encodeEntry lays e out as tag | id | package | aliases | upstream |
// summary | published (RFC 3339, "" if unknown) | parts, where a string is
// uvarint length + bytes, a list is uvarint count + items, a part is
// ranges | versions | severity (level, score as float64 bits, vector), a
// range is semver byte | events, an event kind | version.
func encodeEntry(e *entry) []byte {
	b := make([]byte, 0, 256)
	b = append(b, binaryEntryTag)
	b = appendString(b, e.ID)
	b = appendString(b, e.Package)
	b = appendStrings(b, e.Aliases)
	b = appendStrings(b, e.Upstream)
	b = appendString(b, e.Summary)
	published := ""
	if !e.Published.IsZero() {
		published = e.Published.Format(time.RFC3339Nano)
	}
	b = appendString(b, published)
	b = binary.AppendUvarint(b, uint64(len(e.Parts)))
	for _, p := range e.Parts {
		b = binary.AppendUvarint(b, uint64(len(p.Ranges)))
		for _, r := range p.Ranges {
			sv := byte(0)
			if r.Semver {
				sv = 1
			}
			b = append(b, sv)
			b = binary.AppendUvarint(b, uint64(len(r.Events)))
			for _, ev := range r.Events {
				b = appendString(b, ev.Kind)
				b = appendString(b, ev.Version)
			}
		}
		b = appendStrings(b, p.Versions)
		b = appendString(b, p.Severity.Level)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(p.Severity.Score))
		b = appendString(b, p.Severity.Vector)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// decodeEntry reads an index value in either form.
func decodeEntry(v []byte) (entry, error) {
	var e entry
	if len(v) > 0 && v[0] == binaryEntryTag {
		d := entryDecoder{b: v[1:]}
		e = d.entry()
		if d.err == nil && len(d.b) != 0 {
			d.err = errors.New("trailing bytes")
		}
		return e, d.err
	}
	err := json.Unmarshal(v, &e)
	return e, err
}

var errTruncated = errors.New("truncated entry")

// entryDecoder reads the binary form; the first error sticks and every
// count is checked against the bytes left, so a damaged value costs an
// error, not a huge allocation.
type entryDecoder struct {
	b   []byte
	err error
	// src, when set, is a string copy of the bytes to decode (b as it
	// was at the start): strings are cut out of it, so a finding's id,
	// aliases and prose cost one allocation, not one each.
	src string
}

func (d *entryDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	n, w := binary.Uvarint(d.b)
	if w <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[w:]
	return n
}

// count reads a list length; each item takes at least one byte.
func (d *entryDecoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return 0
	}
	return int(n)
}

func (d *entryDecoder) string() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	var s string
	if d.src != "" {
		off := len(d.src) - len(d.b)
		s = d.src[off : off+n]
	} else {
		s = string(d.b[:n])
	}
	d.b = d.b[n:]
	return s
}

func (d *entryDecoder) strings() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.string())
	}
	return out
}

func (d *entryDecoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.err = errTruncated
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *entryDecoder) float() float64 {
	if d.err != nil || len(d.b) < 8 {
		d.err = errTruncated
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return f
}

func (d *entryDecoder) entry() entry {
	e := entry{ID: d.string(), Package: d.string(), Aliases: d.strings(), Upstream: d.strings(), Summary: d.string()}
	e.Published, d.err = d.published()
	if n := d.count(); n > 0 {
		e.Parts = make([]part, 0, n)
		for range n {
			e.Parts = append(e.Parts, d.part())
		}
	}
	return e
}

// published reads the publication time ("" for unknown); the error is
// the decoder's, or the time's.
func (d *entryDecoder) published() (time.Time, error) {
	published := d.string()
	if published == "" || d.err != nil {
		return time.Time{}, d.err
	}
	t, err := time.Parse(time.RFC3339Nano, published)
	if err != nil {
		return time.Time{}, fmt.Errorf("published: %w", err)
	}
	return t, nil
}

func (d *entryDecoder) part() part {
	var p part
	if n := d.count(); n > 0 {
		p.Ranges = make([]vrange, 0, n)
		for range n {
			r := vrange{Semver: d.byte() == 1}
			if m := d.count(); m > 0 {
				r.Events = make([]event, 0, m)
				for range m {
					r.Events = append(r.Events, event{Kind: d.string(), Version: d.string()})
				}
			}
			p.Ranges = append(p.Ranges, r)
		}
	}
	p.Versions = d.strings()
	p.Severity = severity{Level: d.string(), Score: d.float(), Vector: d.string()}
	return p
}
