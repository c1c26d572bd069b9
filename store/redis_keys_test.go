package store

import (
	"strings"
	"testing"
)

// clusterSlot is Redis Cluster's key → slot function (CRC16/XMODEM of the
// hash tag, or of the whole key, mod 16384), written out here so the test
// does not trust the code it checks.
func clusterSlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// checkKeySlots: the keys one script touches lie in one slot, and
// different records get different keys, whatever the names hold.
func checkKeySlots(t *testing.T, digest, where, blob, subject string) {
	t.Helper()
	k := redisKeys{prefix: "p"}
	same := func(what string, keys ...string) {
		t.Helper()
		for _, key := range keys[1:] {
			if clusterSlot(key) != clusterSlot(keys[0]) {
				t.Fatalf("%s: %q (slot %d) and %q (slot %d) are in different slots", what, keys[0], clusterSlot(keys[0]), key, clusterSlot(key))
			}
		}
	}
	// The decision script, the blob gate's script and the blob link.
	same("repository", k.decision(where, digest), k.verdicts(where), k.blobImages(where, blob), k.blobLink(where, blob), k.parents(where, blob))
	same("artifacts", k.referrers(subject), k.contents(), k.contentRefs())
	if digest != blob && k.scan(digest) == k.scan(blob) {
		t.Fatalf("scan records of %q and %q share the key %q", digest, blob, k.scan(digest))
	}
}

func TestRedisKeySlots(t *testing.T) {
	// Known answers of Redis' CLUSTER KEYSLOT.
	for key, want := range map[string]uint16{"foo": 12182, "123456789": 12739, "{user1000}.following": 3443, "foo{}{bar}": 8363} {
		if got := clusterSlot(key); got != want {
			t.Fatalf("clusterSlot(%q) = %d, want %d", key, got, want)
		}
	}
	tests := []struct{ digest, where, blob, subject string }{
		{"sha256:" + strings.Repeat("a", 64), "docker.io/library/alpine", "sha256:" + strings.Repeat("b", 64), "docker.io/library/alpine@sha256:1"},
		{"", "", "", ""},
		{"}x", "a/{}", "}{", "{x}"},         // an empty tag would hash the whole key
		{"{a}", "{b}/c", "{", "s{}"},        // braces inside the names
		{"sha256:}", "up/repo}", "}", "}{"}, // a closing brace first
	}
	for _, tt := range tests {
		checkKeySlots(t, tt.digest, tt.where, tt.blob, tt.subject)
	}
}

func FuzzRedisKeySlots(f *testing.F) {
	f.Add("sha256:"+strings.Repeat("a", 64), "docker.io/library/alpine", "sha256:"+strings.Repeat("b", 64), "s")
	f.Add("}x", "a/{}", "}{", "{x}")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, digest, where, blob, subject string) {
		checkKeySlots(t, digest, where, blob, subject)
	})
}
