package vulndb

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// FuzzRecordMetaView: stored record metadata comes from a file on disk.
// Reading it in place accepts and refuses exactly what decoding it does,
// and reads the same fields; the ecosystem counts are those the walks
// counted from the decoded keys.
func FuzzRecordMetaView(f *testing.F) {
	full := recordMeta{Hash: sha256.Sum256([]byte("h")), Source: "https://osv/Debian/all.zip",
		Keys: []string{"Debian:12\x00glibc", "Debian:12\x00linux", "Ubuntu:22.04\x00glibc"}, Raw: sha256.Sum256([]byte("r")), Zip: sha256.Sum256([]byte("z"))}
	f.Add(full.encode())
	f.Add(recordMeta{Keys: []string{"\x00x", "npm\x00y"}}.encode())
	old := full.encode()
	f.Add(old[:len(old)-32]) // written before the zip fingerprint existed
	f.Add(old[:len(old)-64]) // written before the raw hash existed
	f.Add(old[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeRecordMeta(b)
		v, verr := viewRecordMeta(b)
		if (err == nil) != (verr == nil) {
			t.Fatalf("decode: %v, view: %v", err, verr)
		}
		if err != nil {
			return
		}
		if v.hash != m.Hash || string(v.source) != m.Source || v.raw != m.Raw || v.zip != m.Zip || len(v.keys) != len(m.Keys) {
			t.Fatalf("view %+v, decoded %+v", v, m)
		}
		for i, k := range v.keys {
			if !bytes.Equal(k, []byte(m.Keys[i])) {
				t.Fatalf("key %d: view %q, decoded %q", i, k, m.Keys[i])
			}
		}
		want := map[string]int{}
		last := ""
		for _, k := range m.Keys {
			if eco, _, _ := bytes.Cut([]byte(k), []byte{0}); string(eco) != last {
				want[string(eco)]++
				last = string(eco)
			}
		}
		got := map[string]int{}
		v.countEcosystems(got)
		if len(got) != len(want) {
			t.Fatalf("ecosystems %v, want %v", got, want)
		}
		for k, n := range want {
			if got[k] != n {
				t.Fatalf("ecosystems %v, want %v", got, want)
			}
		}
	})
}
