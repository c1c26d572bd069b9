package policy

import (
	"slices"
	"testing"
)

func TestNewerReleases(t *testing.T) {
	for _, c := range []struct {
		name           string
		tags           []string
		current        string
		patch, overall string
	}{
		{"numeric not lexical", []string{"1.2.3", "1.2.9", "1.2.10"}, "1.2.3", "1.2.10", "1.2.10"},
		{"v prefix optional", []string{"v1.2.3", "v1.2.10", "1.3.0"}, "1.2.3", "v1.2.10", "1.3.0"},
		{"v current, plain tags", []string{"1.2.10"}, "v1.2.3", "1.2.10", "1.2.10"},
		{"same version both spellings: like current", []string{"1.2.4", "v1.2.4"}, "v1.2.3", "v1.2.4", "v1.2.4"},
		{"patch stays in the minor", []string{"1.4.2", "1.4.7", "1.5.0", "2.0.1"}, "1.4.2", "1.4.7", "2.0.1"},
		{"newer minor only", []string{"1.4.2", "1.5.0"}, "1.4.2", "", "1.5.0"},
		{"already newest", []string{"1.4.2", "1.4.1", "1.3.9"}, "1.4.2", "", ""},
		{"latest and other words ignored", []string{"latest", "stable", "main", "edge", "1.4.3"}, "1.4.2", "1.4.3", "1.4.3"},
		{"current is latest", []string{"1.4.3", "latest"}, "latest", "", ""},
		{"no current tag", []string{"1.4.3"}, "", "", ""},
		{"cosign and commit tags ignored", []string{"sha256-abc.sig", "sha-1234567", "1.4.2-sha256"}, "1.4.2", "", ""},
		{"pre-releases ignored for a release", []string{"1.4.3-rc.1", "2.0.0-beta", "1.4.2"}, "1.4.2", "", ""},
		{"pre-release current sees releases and pre-releases", []string{"1.5.0-rc.1", "1.5.0-rc.2", "1.5.0-rc.10"}, "1.5.0-rc.2", "1.5.0-rc.10", "1.5.0-rc.10"},
		{"release beats its pre-releases", []string{"1.5.0-rc.3", "1.5.0"}, "1.5.0-rc.2", "1.5.0", "1.5.0"},
		{"rc2 below rc10", []string{"1.0.0-rc10"}, "1.0.0-rc2", "1.0.0-rc10", "1.0.0-rc10"},
		{"variant must match", []string{"1.25.4", "1.25.4-alpine", "1.26.0-slim", "1.26.0-alpine"}, "1.25.3-alpine", "1.25.4-alpine", "1.26.0-alpine"},
		{"plain current ignores variants", []string{"1.25.4-alpine"}, "1.25.3", "", ""},
		{"floating aliases ignored", []string{"3", "3.21", "3.20", "3.20.4"}, "3.20.3", "3.20.4", "3.20.4"},
		{"two components compare with two", []string{"3.21", "3.20.9", "4"}, "3.20", "", "3.21"},
		{"four components", []string{"1.2.3.5", "1.2.4.0", "1.3.0.0"}, "1.2.3.4", "1.2.4.0", "1.3.0.0"},
		{"five components are not a version", []string{"1.2.3.4.6"}, "1.2.3.4.5", "", ""},
		{"leading zeros", []string{"2024.01.10", "2024.02.01"}, "2024.01.05", "2024.01.10", "2024.02.01"},
		{"date tags", []string{"20240101", "20231201"}, "20231115", "", "20240101"},
		{"overflowing numbers ignored", []string{"99999999999999999999.0.0"}, "1.0.0", "", ""},
		{"duplicates", []string{"1.0.1", "1.0.1", "1.0.1"}, "1.0.0", "1.0.1", "1.0.1"},
		{"empty tags", nil, "1.0.0", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			patch, overall := NewerReleases(c.tags, c.current)
			if patch != c.patch || overall != c.overall {
				t.Errorf("NewerReleases(%q, %q) = (%q, %q), want (%q, %q)", c.tags, c.current, patch, overall, c.patch, c.overall)
			}
			// The answer must not depend on the order of tags.
			rev := slices.Clone(c.tags)
			slices.Reverse(rev)
			if p2, o2 := NewerReleases(rev, c.current); p2 != patch || o2 != overall {
				t.Errorf("reversed tags: (%q, %q)", p2, o2)
			}
		})
	}
}

func TestParseTagVersion(t *testing.T) {
	for tag, ok := range map[string]bool{
		"1": true, "v1": true, "1.2.3": true, "1.2.3-rc.1": true, "1.2.3-alpine": true,
		"": false, "v": false, "1.": false, ".1": false, "1..2": false, "1.2.3-": false,
		"V1.2.3": false, "1.2.3+build": false, "latest": false, "1.2.3 ": false,
	} {
		if _, got := parseTagVersion(tag); got != ok {
			t.Errorf("parseTagVersion(%q) ok = %v, want %v", tag, got, ok)
		}
	}
}
